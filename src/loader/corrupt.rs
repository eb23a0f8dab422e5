//! The corrupt-data policy: what the loader does with a row group that
//! cannot be read, an image that does not decode or a label that breaks
//! the format, and the report of what it left out.

use crate::error::Error;

/// What to do with data that cannot be used (an unreadable row group, an
/// image that does not decode, a label that breaks the format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CorruptPolicy {
    /// Stop with [`Error::Corrupt`] naming file, row group and image id.
    #[default]
    Fail,
    /// Leave the samples' slots as padding and report them in [`Loader::skipped`](super::Loader::skipped).
    Skip,
}

/// A sample or row group the `Skip` policy left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptReport {
    /// The data file.
    pub file: String,
    /// Row group.
    pub row_group: usize,
    /// The sample, when one sample was bad.
    pub image_id: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for CorruptReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, row group {}", self.file, self.row_group)?;
        if let Some(i) = &self.image_id {
            write!(f, " (image_id {i:?})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl From<CorruptReport> for Error {
    fn from(r: CorruptReport) -> Self {
        Error::Corrupt {
            file: r.file,
            row_group: r.row_group,
            image_id: r.image_id,
            reason: r.reason,
        }
    }
}
