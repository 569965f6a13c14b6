//! The store's error type.

use torchat_wire::GroupId;

use crate::MsgId;

/// Everything that can go wrong in a [`Store`](crate::Store).
///
/// A failed write changed nothing: every write call (and every [`Store::apply`] batch) is one
/// transaction.
///
/// [`Store::apply`]: crate::Store::apply
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The SQLite library reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Reading or changing the database file failed (e.g. setting its mode).
    #[error("database file error: {0}")]
    Io(#[from] std::io::Error),
    /// The database was written by a newer version of the program.
    #[error(
        "the database has schema version {found}, newer than the {known} this program knows; \
         refusing to open it (upgrade torchat)"
    )]
    NewerSchema {
        /// The version in the file.
        found: u32,
        /// The newest version this code knows.
        known: u32,
    },
    /// A claim or outbox entry named a message that is not stored.
    #[error("no message with id {0}")]
    UnknownMessage(MsgId),
    /// A member was added to a group that is not stored.
    #[error("no group with id {0}")]
    UnknownGroup(GroupId),
    /// A value the store cannot keep faithfully (a timestamp over `i64::MAX`, a group mode
    /// containing whitespace, ...).
    #[error("invalid value: {0}")]
    Invalid(String),
    /// A stored value could not be read back (the file was changed behind our back).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

/// Shorthand for results with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
