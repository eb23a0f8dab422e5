//! Auditing what teachers wrote: statistics per task (`inspect --stats`),
//! a full integrity check (`validate`), and pictures (`render`).
//!
//! Statistics and pictures have one module per label kind
//! (`stats/<kind>.rs`, `render/<kind>.rs`); the drivers dispatch on the
//! kind with exhaustive matches, so the compiler lists every place a new
//! kind must be handled.

mod dist;
mod render;
mod stats;
mod validate;

pub use dist::{Dist, Summary, UnitHistogram};
pub use render::{class_color, render_grid, render_sample, Panel, RenderOptions, Rendered};
pub use stats::{
    dataset_stats, label_file_stats, ClassCount, ClassificationStats, DatasetStats, DepthStats,
    DetectionStats, MissingLabels, SegmentationStats, SizeCount, StatsOptions, StatsProgress,
    TaskStats,
};
pub use validate::{validate, validate_label_file, Problem, ValidateReport};
