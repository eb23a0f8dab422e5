//! The public error type of the library. Every variant names the object
//! (file, log entry, task, shard, row or image id) it is about, so that a
//! user can find the bad data without a debugger.

use std::fmt;

mod foreign;

use crate::redact::sanitize;

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
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A dataset URL or path could not be understood.
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The dataset has no commit 0.
    NotADataset {
        /// The dataset URL.
        url: String,
    },
    /// `init` found a dataset already there.
    DatasetExists {
        /// The dataset URL.
        url: String,
    },
    /// A requested version does not exist.
    NoSuchVersion {
        /// The version asked for.
        version: u64,
        /// The newest version there is.
        latest: u64,
    },
    /// A log file or checkpoint is malformed.
    CorruptLog {
        /// The log or checkpoint file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A log file holds an action this reader does not know.
    UnknownAction {
        /// The log file.
        file: String,
        /// The action's name.
        action: String,
    },
    /// The dataset needs a newer reader or unknown features.
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
    Conflict {
        /// The version the commit was checked against.
        version: u64,
        /// What conflicts.
        reason: String,
    },
    /// A transaction breaks an invariant of the log: committed, it would
    /// make the dataset unreadable, so nothing was written.
    InvalidCommit {
        /// The version the commit was checked against.
        version: u64,
        /// The invariant it breaks.
        reason: String,
    },
    /// `init` found other things at the location.
    LocationNotEmpty {
        /// The dataset URL.
        url: String,
        /// Some of what is there.
        found: Vec<String>,
    },
    /// A commit kept losing races and gave up.
    CommitRetriesExhausted {
        /// Number of attempts made.
        attempts: u32,
        /// The version last tried.
        version: u64,
    },
    /// A task name is not `[a-z0-9_-]{1,64}`.
    InvalidTaskName {
        /// The name given.
        name: String,
    },
    /// A task definition is not valid.
    InvalidTask {
        /// The task name.
        task: String,
        /// What is wrong.
        reason: String,
    },
    /// A task is not defined in the dataset.
    UnknownTask {
        /// The task name.
        task: String,
        /// The tasks there are, comma separated.
        defined: String,
    },
    /// An image shard id is not in the dataset.
    UnknownShard {
        /// The shard id.
        shard: u64,
        /// The version looked at.
        version: u64,
        /// The number of image shards.
        count: usize,
    },
    /// A data file's schema does not match the format.
    Schema {
        /// The file.
        location: Location,
        /// What is wrong.
        reason: String,
    },
    /// A value in a data file (or passed to a writer) breaks the format's rules.
    InvalidValue {
        /// File, row and image id.
        location: Location,
        /// What is wrong.
        reason: String,
    },
    /// A label file is not aligned with its image shard.
    Misaligned {
        /// The label file and the first row that differs.
        location: Location,
        /// The image shard.
        shard: u64,
        /// What differs.
        reason: String,
    },
    /// A file is not an image this format accepts.
    NotAnImage {
        /// The file.
        file: String,
        /// Why it was refused.
        reason: String,
    },
    /// A data file's bytes do not match the checksum in the log.
    Checksum {
        /// The file.
        file: String,
        /// The checksum in the log.
        expected: String,
        /// The checksum of the bytes read.
        actual: String,
    },
    /// The loader met data it could not use (policy `fail`).
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
    Teacher {
        /// The image shard being labeled, when there was one.
        shard: Option<u64>,
        /// What went wrong.
        reason: String,
    },
    /// Loader options that cannot work together, or a state that does not fit them.
    Loader(String),
    /// An invariant of must-ds itself failed: a bug, never the data's fault.
    Internal(String),
    /// Parquet could not read or write a file.
    Parquet {
        /// The file.
        file: String,
        /// The parquet error.
        source: parquet::errors::ParquetError,
    },
    /// Arrow failed on a file's data.
    Arrow {
        /// The file.
        file: String,
        /// The arrow error.
        source: arrow_schema::ArrowError,
    },
    /// The object store failed.
    Store {
        /// The object store error (it names the path).
        source: object_store::Error,
    },
    /// Local I/O failed.
    Io {
        /// The local path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A JSON document could not be read or written.
    Json {
        /// The file or object.
        file: String,
        /// The serde error.
        source: serde_json::Error,
    },
}

impl fmt::Display for Error {
    /// The message, with the secrets of URLs hidden and control characters
    /// escaped (see [`crate::redact`]): it may quote a URL given on the
    /// command line, or strings read from a log or a data file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&sanitize(&self.message()))
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Parquet { source, .. } => Some(source),
            Error::Arrow { source, .. } => Some(source),
            Error::Store { source } => Some(source),
            Error::Io { source, .. } => Some(source),
            Error::Json { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    /// The message before [`sanitize`].
    fn message(&self) -> String {
        match self {
            Error::InvalidUrl { url, reason } => {
                format!("invalid dataset location {url:?}: {reason}")
            }
            Error::NotADataset { url } => format!(
                "no must-ds dataset at {url} (no {url}/_must/log/00000000000000000000.json); create one with `must-ds init`"
            ),
            Error::DatasetExists { url } => format!("a must-ds dataset already exists at {url}"),
            Error::NoSuchVersion { version, latest } => {
                format!("version {version} does not exist (latest is {latest})")
            }
            Error::CorruptLog { file, reason } => format!("corrupt log entry {file}: {reason}"),
            Error::UnknownAction { file, action } => format!(
                "{file}: unknown action {action:?}; this must-ds reads format version 1 and refuses actions it does not understand"
            ),
            Error::UnsupportedProtocol {
                file,
                what,
                supported,
                features,
            } => format!(
                "{file}: dataset requires {what}, but this must-ds supports reader version {supported} with features {features:?}; upgrade must-ds"
            ),
            Error::Conflict { version, reason } => {
                format!("commit conflict at version {version}: {reason}")
            }
            Error::LocationNotEmpty { url, found } => format!(
                "{url} is not empty (it holds {}); `init` creates a dataset only in an empty location, so that nothing of yours is ever mixed with the dataset's files or deleted by `vacuum`",
                found.join(", ")
            ),
            Error::InvalidCommit { version, reason } => format!(
                "commit refused at version {version}: {reason}; nothing was committed"
            ),
            Error::CommitRetriesExhausted { attempts, version } => format!(
                "gave up committing after {attempts} attempts (last tried version {version}); too many concurrent writers"
            ),
            Error::InvalidTaskName { name } => {
                format!("invalid task name {name:?}: it must match [a-z0-9_-]{{1,64}}")
            }
            Error::InvalidTask { task, reason } => {
                format!("invalid definition of task {task:?}: {reason}")
            }
            Error::UnknownTask { task, defined } => {
                format!("task {task:?} is not defined in this dataset (defined: {defined})")
            }
            Error::UnknownShard {
                shard,
                version,
                count,
            } => format!(
                "image shard {shard} does not exist in this dataset (version {version} has {count} image shards)"
            ),
            Error::Schema { location, reason } => format!("{location}: schema mismatch: {reason}"),
            Error::InvalidValue { location, reason } => {
                format!("{location}: invalid value: {reason}")
            }
            Error::Misaligned {
                location,
                shard,
                reason,
            } => format!("{location}: not aligned with image shard {shard}: {reason}"),
            Error::NotAnImage { file, reason } => format!(
                "{file}: not a supported image (JPEG, PNG, WebP, GIF, BMP, TIFF): {reason}"
            ),
            Error::Checksum {
                file,
                expected,
                actual,
            } => format!("{file}: checksum mismatch: log says {expected}, file has {actual}"),
            Error::Corrupt {
                file,
                row_group,
                image_id,
                reason,
            } => format!(
                "{file}, row group {row_group}{}: {reason}",
                image_id
                    .as_ref()
                    .map(|i| format!(" (image_id {i:?})"))
                    .unwrap_or_default()
            ),
            Error::Teacher { shard, reason } => format!(
                "teacher{}: {reason}",
                shard
                    .map(|s| format!(" on image shard {s}"))
                    .unwrap_or_default()
            ),
            Error::Loader(m) => format!("loader: {m}"),
            Error::Internal(m) => {
                format!("internal error (a bug in must-ds; please report it): {m}")
            }
            Error::Parquet { file, source } => format!("{file}: parquet: {source}"),
            Error::Arrow { file, source } => format!("{file}: arrow: {source}"),
            Error::Store { source } => format!("object store: {source}"),
            Error::Io { path, source } => format!("{path}: {source}"),
            Error::Json { file, source } => format!("{file}: JSON: {source}"),
        }
    }
}
