//! The vectors semantic search ranks by: one embedding per task or message,
//! tagged with the model that made it, kept by the store beside the
//! full-text index ([`VectorStore`], reached through
//! [`super::store::Store::vectors`]). Vectors of another model than the one
//! asked for are never compared: changing the model re-embeds.

use super::search::{HitKind, SearchHit, SearchQuery};
use super::store::StoreError;
use async_trait::async_trait;

/// A task or message that has (or needs) a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemRef {
    /// `task` or `message`.
    pub kind: HitKind,
    /// The task's or message's id.
    pub id: i64,
}

impl ItemRef {
    /// A task.
    pub fn task(id: i64) -> Self {
        ItemRef {
            kind: HitKind::Task,
            id,
        }
    }

    /// A direct message or broadcast.
    pub fn message(id: i64) -> Self {
        ItemRef {
            kind: HitKind::Message,
            id,
        }
    }
}

/// The text of an item to embed: a task's title, body and result, a
/// message's text.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemText {
    /// Which item.
    pub item: ItemRef,
    /// What is embedded.
    pub text: String,
}

impl ItemText {
    /// The text of a stored item, from a row's `kind`, `id` and `text`
    /// columns (both adapters select them with these names).
    pub fn from_row(kind: &str, id: i64, text: String) -> Result<ItemText, StoreError> {
        let kind = HitKind::parse(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("item kind {kind:?}")))?;
        Ok(ItemText {
            item: ItemRef { kind, id },
            text,
        })
    }
}

/// The ids of the tasks and of the messages among `items`, in their order.
pub fn ids_by_kind(items: &[ItemRef]) -> (Vec<i64>, Vec<i64>) {
    let ids = |kind| {
        items
            .iter()
            .filter(|i| i.kind == kind)
            .map(|i| i.id)
            .collect()
    };
    (ids(HitKind::Task), ids(HitKind::Message))
}

/// One item the nearest-vector search found.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    /// Which item.
    pub item: ItemRef,
    /// Cosine similarity to the query, -1 to 1, higher is better.
    pub similarity: f64,
}

/// How far the vectors are behind the items, for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VectorBacklog {
    /// Items with a vector of this model.
    pub indexed: i64,
    /// Items without one (never embedded, or embedded by another model).
    pub missing: i64,
}

/// Vectors in the store. Every backend ranks exactly (cosine over every
/// allowed item), so results equal a brute-force ranking.
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Stores (or replaces) the vectors of `items`, made by `model`. All
    /// must have the same number of dimensions, and the same as the
    /// vectors already stored for `model`; otherwise nothing is written
    /// and the error names the model and both dimensions.
    async fn upsert_vectors(
        &self,
        model: &str,
        items: Vec<(ItemRef, Vec<f32>)>,
    ) -> Result<(), StoreError>;

    /// Removes the vectors of `items` (any model); returns how many were removed.
    async fn delete_vectors(&self, items: Vec<ItemRef>) -> Result<u64, StoreError>;

    /// Removes every vector (for a rebuild); returns how many were removed.
    async fn clear_vectors(&self) -> Result<u64, StoreError>;

    /// The `q.limit` tasks and the `q.limit` messages nearest to `query`
    /// by cosine among those with a `model` vector that pass `q`'s filters
    /// (state, agent, since and the reader's privacy rule; `q.terms` is
    /// ignored), each list best first. A query of another length than the
    /// model's stored vectors is `bad_request` naming both.
    async fn nearest_vectors(
        &self,
        model: &str,
        query: &[f32],
        q: &SearchQuery,
    ) -> Result<Vec<VectorHit>, StoreError>;

    /// Up to `limit` items without a `model` vector, oldest first, with the text to embed.
    async fn unembedded(&self, model: &str, limit: i64) -> Result<Vec<ItemText>, StoreError>;

    /// The title and the start of the text (as snippet) of each item that
    /// exists, score 0, in no particular order: how semantic hits are shown.
    async fn describe_items(&self, items: &[ItemRef]) -> Result<Vec<SearchHit>, StoreError>;

    /// The text to embed of each item that exists (as [`VectorStore::unembedded`]
    /// gives it), whether or not it has a vector: for re-embedding items whose
    /// text changed (a task's result).
    async fn item_texts(&self, items: &[ItemRef]) -> Result<Vec<ItemText>, StoreError>;

    /// How many items have a `model` vector and how many lack one.
    async fn vector_backlog(&self, model: &str) -> Result<VectorBacklog, StoreError>;
}

/// Checks that every vector of a batch has `dims` dimensions (the first
/// one's when None) and holds only finite numbers; returns the batch's dimensions.
pub fn check_dims(
    model: &str,
    dims: Option<usize>,
    items: &[(ItemRef, Vec<f32>)],
) -> Result<usize, StoreError> {
    let want = match (dims, items.first()) {
        (Some(d), _) => d,
        (None, Some((_, v))) => v.len(),
        (None, None) => return Ok(0),
    };
    if want == 0 {
        return Err(StoreError::Rejected(super::error::CoreError::bad_request(
            format!("a vector of the embeddings model `{model}` is empty"),
        )));
    }
    for (item, v) in items {
        if v.len() != want {
            return Err(wrong_dims(model, want, v.len()));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(StoreError::Rejected(super::error::CoreError::bad_request(
                format!(
                    "the vector of {} {} (model `{model}`) holds a value that is not a finite number",
                    item.kind.as_str(),
                    item.id
                ),
            )));
        }
    }
    Ok(want)
}

/// The refusal of a vector whose length is not the model's.
pub fn wrong_dims(model: &str, want: usize, got: usize) -> StoreError {
    StoreError::Rejected(super::error::CoreError::bad_request(format!(
        "the embeddings model `{model}` has vectors of {want} dimensions here, \
         but this vector has {got}"
    )))
}

/// A vector as stored: its numbers as little-endian `f32`, one after the
/// other (sqlite-vec's own format, and `bytea` on PostgreSQL).
pub fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The inverse of [`to_blob`]; None when the length is not a multiple of 4.
pub fn from_blob(b: &[u8]) -> Option<Vec<f32>> {
    if !b.len().is_multiple_of(4) {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_survives_its_blob() {
        let v = vec![0.5, -1.25, 3.0e-7, 42.0];
        assert_eq!(from_blob(&to_blob(&v)), Some(v));
        assert_eq!(from_blob(&[1, 2, 3]), None);
    }

    #[test]
    fn a_batch_of_mixed_lengths_is_refused_naming_model_and_dims() {
        let items = vec![
            (ItemRef::task(1), vec![1.0; 3]),
            (ItemRef::task(2), vec![1.0; 4]),
        ];
        let e = check_dims("m1", None, &items).unwrap_err().to_string();
        assert!(
            e.contains("`m1`") && e.contains('3') && e.contains('4'),
            "{e}"
        );
        assert_eq!(check_dims("m1", Some(3), &items[..1]).unwrap(), 3);
    }
}
