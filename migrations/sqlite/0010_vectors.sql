-- Vectors for semantic search (docs/search.md): one per task or message,
-- tagged with the embeddings model that made it. The numbers are
-- little-endian f32 one after the other, sqlite-vec's own format, so
-- vec_distance_cosine() ranks them in SQL beside the filters.
CREATE TABLE item_vectors (
    kind        TEXT NOT NULL CHECK (kind IN ('task', 'message')),
    item_id     INTEGER NOT NULL,
    model       TEXT NOT NULL,
    dims        INTEGER NOT NULL,
    vector      BLOB NOT NULL,
    embedded_at INTEGER NOT NULL,
    PRIMARY KEY (kind, item_id)
);
CREATE INDEX item_vectors_model ON item_vectors (model, kind, item_id);
