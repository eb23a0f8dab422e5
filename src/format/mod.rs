//! The contract of FORMAT.md in types: task definitions, log actions, the
//! Arrow schemas of image shards and label files, and version checks.
//! Everything that writes or reads a dataset goes through these types, and
//! `schemas/` holds the same contract in machine-readable form.

mod action;
mod schema;
mod task;

pub use action::{
    checksum_of, Action, AddImages, AddLabels, Commit, DatasetInfo, Protocol, Remove, FEATURES,
    READER_VERSION, WRITER_VERSION,
};
pub use schema::{
    arrow_type_name, check_footer_counts, image_schema, label_schema, logical_type_name,
    META_FORMAT_VERSION, META_TABLE, META_TASK,
};
pub use task::{
    validate_task_name, ClassEncoding, DepthRepresentation, MaskDtype, TaskDef, TaskKind, Teacher,
};

/// The on-disk format version this build reads and writes.
pub const FORMAT_VERSION: &str = "1";
