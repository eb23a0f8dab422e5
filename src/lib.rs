//! must-ds: the data layer of multi-task self-training.
#![warn(missing_docs)]

pub mod codec;
pub mod error;
pub mod format;
pub mod store;

pub use error::{Error, Result};
pub use store::{Dataset, DatasetOptions, Snapshot, Transaction};
pub mod read;
pub mod write;
pub mod ingest;
pub mod cli;
