//! The public error type of the library. Every variant names the object
//! (file, log entry, task, shard, row or image id) it is about, so that a
//! user can find the bad data without a debugger.

use std::fmt;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in a data file something went wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The file (object path or local path).
    pub file: String,
    /// Row index within the file, when known.
    pub row: Option<usize>,
    /// The image id of that row, when known.
    pub image_id: Option<String>,
}

impl Location {
    /// A location naming only a file.
    pub fn file(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            row: None,
            image_id: None,
        }
    }

    /// The same file, at a given row with its image id.
    pub fn at(&self, row: usize, image_id: Option<&str>) -> Self {
        Self {
            file: self.file.clone(),
            row: Some(row),
            image_id: image_id.map(str::to_owned),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(row) = self.row {
            write!(f, ", row {row}")?;
        }
        if let Some(id) = &self.image_id {
            write!(f, " (image_id {id:?})")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in must-ds.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A dataset URL or path could not be understood.
    #[error("invalid dataset location {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The dataset has no commit 0.
    #[error("no must-ds dataset at {url} (no {url}/_must/log/00000000000000000000.json); create one with `must-ds init`")]
    NotADataset {
        /// The dataset URL.
        url: String,
    },
    /// `init` found a dataset already there.
    #[error("a must-ds dataset already exists at {url}")]
    DatasetExists {
        /// The dataset URL.
        url: String,
    },
    /// A requested version does not exist.
    #[error("version {version} does not exist (latest is {latest})")]
    NoSuchVersion {
        /// The version asked for.
        version: u64,
        /// The newest version there is.
        latest: u64,
    },
    /// A log file or checkpoint is malformed.
    #[error("corrupt log entry {file}: {reason}")]
    CorruptLog {
        /// The log or checkpoint file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A log file holds an action this reader does not know.
    #[error("{file}: unknown action {action:?}; this must-ds reads format version 1 and refuses actions it does not understand")]
    UnknownAction {
        /// The log file.
        file: String,
        /// The action's name.
        action: String,
    },
    /// The dataset needs a newer reader or unknown features.
    #[error("{file}: dataset requires {what}, but this must-ds supports reader version {supported} with features {features:?}; upgrade must-ds")]
    UnsupportedProtocol {
        /// The log file with the protocol action.
        file: String,
        /// What was asked for.
        what: String,
        /// The reader version this build supports.
        supported: u32,
        /// The features this build supports.
        features: Vec<String>,
    },
    /// A commit conflicts with one that was committed concurrently (or before).
    #[error("commit conflict at version {version}: {reason}")]
    Conflict {
        /// The version the commit was checked against.
        version: u64,
        /// What conflicts.
        reason: String,
    },
    /// A commit kept losing races and gave up.
    #[error("gave up committing after {attempts} attempts (last tried version {version}); too many concurrent writers")]
    CommitRetriesExhausted {
        /// Number of attempts made.
        attempts: u32,
        /// The version last tried.
        version: u64,
    },
    /// A task name is not `[a-z0-9_-]{1,64}`.
    #[error("invalid task name {name:?}: it must match [a-z0-9_-]{{1,64}}")]
    InvalidTaskName {
        /// The name given.
        name: String,
    },
    /// A task definition is not valid.
    #[error("invalid definition of task {task:?}: {reason}")]
    InvalidTask {
        /// The task name.
        task: String,
        /// What is wrong.
        reason: String,
    },
    /// A task is not defined in the dataset.
    #[error("task {task:?} is not defined in this dataset (defined: {defined})")]
    UnknownTask {
        /// The task name.
        task: String,
        /// The tasks there are, comma separated.
        defined: String,
    },
    /// An image shard id is not in the dataset.
    #[error("image shard {shard} does not exist in this dataset (version {version} has {count} image shards)")]
    UnknownShard {
        /// The shard id.
        shard: u64,
        /// The version looked at.
        version: u64,
        /// The number of image shards.
        count: usize,
    },
    /// A data file's schema does not match the format.
    #[error("{location}: schema mismatch: {reason}")]
    Schema {
        /// The file.
        location: Location,
        /// What is wrong.
        reason: String,
    },
    /// A value in a data file (or passed to a writer) breaks the format's rules.
    #[error("{location}: invalid value: {reason}")]
    InvalidValue {
        /// File, row and image id.
        location: Location,
        /// What is wrong.
        reason: String,
    },
    /// A label file is not aligned with its image shard.
    #[error("{location}: not aligned with image shard {shard}: {reason}")]
    Misaligned {
        /// The label file and the first row that differs.
        location: Location,
        /// The image shard.
        shard: u64,
        /// What differs.
        reason: String,
    },
    /// A file is not an image this format accepts.
    #[error("{file}: not a supported image (JPEG, PNG, WebP, GIF, BMP, TIFF): {reason}")]
    NotAnImage {
        /// The file.
        file: String,
        /// Why it was refused.
        reason: String,
    },
    /// A data file's bytes do not match the checksum in the log.
    #[error("{file}: checksum mismatch: log says {expected}, file has {actual}")]
    Checksum {
        /// The file.
        file: String,
        /// The checksum in the log.
        expected: String,
        /// The checksum of the bytes read.
        actual: String,
    },
    /// The loader met data it could not use (policy `fail`).
    #[error("{file}, row group {row_group}{}: {reason}", image_id.as_ref().map(|i| format!(" (image_id {i:?})")).unwrap_or_default())]
    Corrupt {
        /// The data file.
        file: String,
        /// The row group within it.
        row_group: usize,
        /// The sample, when the problem is one sample's.
        image_id: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A teacher model could not label a shard (or could not start).
    #[error("teacher{}: {reason}", shard.map(|s| format!(" on image shard {s}")).unwrap_or_default())]
    Teacher {
        /// The image shard being labeled, when there was one.
        shard: Option<u64>,
        /// What went wrong.
        reason: String,
    },
    /// Loader options that cannot work together, or a state that does not fit them.
    #[error("loader: {0}")]
    Loader(String),
    /// Parquet could not read or write a file.
    #[error("{file}: parquet: {source}")]
    Parquet {
        /// The file.
        file: String,
        /// The parquet error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Arrow failed on a file's data.
    #[error("{file}: arrow: {source}")]
    Arrow {
        /// The file.
        file: String,
        /// The arrow error.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// The object store failed.
    #[error("object store: {source}")]
    Store {
        /// The object store error (it names the path).
        #[source]
        source: object_store::Error,
    },
    /// Local I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The local path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document could not be read or written.
    #[error("{file}: JSON: {source}")]
    Json {
        /// The file or object.
        file: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl From<object_store::Error> for Error {
    fn from(source: object_store::Error) -> Self {
        Error::Store { source }
    }
}

impl Error {
    pub(crate) fn parquet(file: impl Into<String>, source: parquet::errors::ParquetError) -> Self {
        Error::Parquet {
            file: file.into(),
            source,
        }
    }
    pub(crate) fn arrow(file: impl Into<String>, source: arrow_schema::ArrowError) -> Self {
        Error::Arrow {
            file: file.into(),
            source,
        }
    }
    pub(crate) fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn value(location: Location, reason: impl Into<String>) -> Self {
        Error::InvalidValue {
            location,
            reason: reason.into(),
        }
    }
    pub(crate) fn schema(location: Location, reason: impl Into<String>) -> Self {
        Error::Schema {
            location,
            reason: reason.into(),
        }
    }
}
