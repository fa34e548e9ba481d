//! One way to read a column by name from either driver's row: the read
//! pool's sqlx rows and the writer thread's rusqlite rows decode the same
//! tables, so each `*_from_row` is written once, generic over [`Cols`].

use crate::core::store::StoreError;
use sqlx::Row;
use std::str::FromStr;

/// Typed access to a row's columns by name.
pub(super) trait Cols {
    /// A non-null integer column.
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    /// A non-null text column.
    fn text(&self, col: &str) -> Result<String, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;

    /// A text column parsed with `FromStr`, a parse failure being corruption.
    fn parsed<T: FromStr<Err = String>>(&self, col: &str) -> Result<T, StoreError> {
        T::from_str(&self.text(col)?).map_err(StoreError::Corrupt)
    }
}

impl Cols for sqlx::sqlite::SqliteRow {
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn text(&self, col: &str) -> Result<String, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(col)?)
    }
}

impl Cols for rusqlite::Row<'_> {
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        Ok(self.get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.get(col)?)
    }
    fn text(&self, col: &str) -> Result<String, StoreError> {
        Ok(self.get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get(col)?)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(Box::new(e))
    }
}
