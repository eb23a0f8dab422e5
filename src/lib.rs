//! must-ds: the data layer of multi-task self-training (MuST).
//!
//! Specialized teachers (classification, detection, segmentation, depth)
//! label a large image corpus; must-ds stores the images and every teacher's
//! pseudo labels once, as aligned Parquet files under a commit log, on a
//! local folder or any object store; a student then trains on all tasks.
//!
//! The on-disk format (v1) is the contract in `docs/FORMAT.md` in the
//! repository, with its machine-readable form in `schemas/`:
//!
//! * image shards `images/part-<uuid>.parquet` (`image_id`, `source`, the
//!   encoded `image` or a `uri`, `width`, `height`);
//! * one label file per (task, image shard), `labels/<task>/part-<uuid>.parquet`,
//!   with exactly the shard's rows, order and row groups;
//! * a log `_must/log/{version:020}.json`, one file per commit, written with
//!   create-if-absent so that many machines commit at once without losing
//!   each other's work; checkpoints make opening cost a handful of requests.
//!
//! # Example
//!
//! Create a dataset, ingest an image shard, define a task, have a teacher
//! write labels for the shard, and read them back with the images:
//!
//! ```
//! use must_ds::codec::{ClassLabel, Label};
//! use must_ds::format::TaskDef;
//! use must_ds::write::{ImageShardOptions, ImageShardWriter, LabelWriter};
//! use must_ds::Dataset;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut ds = Dataset::init("memory://guide/corpus", Default::default()).await?;
//!
//! // Encoded images go in as they are; sizes come from their headers.
//! let jpeg = include_bytes!("../data/photos/chelsea.jpg");
//! let mut shard = ImageShardWriter::new(ImageShardOptions::default())?;
//! shard.add_image("cat-0", "photos", jpeg)?;
//! shard.add_image("cat-1", "photos", jpeg)?;
//! let added = ds.add_image_shard(shard.finish()?).await?; // the commit assigns the shard id
//!
//! let task = TaskDef::from_json(
//!     r#"{"name": "cls", "kind": "classification", "num_classes": 10,
//!         "encoding": "topk", "teacher": {"name": "vit-b16"}}"#,
//! )?;
//! ds.define_task(task).await?;
//!
//! // A teacher labels the shard's images (any order; unset rows stay null).
//! let mut labels = LabelWriter::for_shard(&ds, "cls", added.shard).await?;
//! labels.set("cat-1", Label::Classification(ClassLabel::TopK { classes: vec![3, 5], probs: vec![0.8, 0.1] }))?;
//! ds.add_label_file("cls", added.shard, labels.finish()?, false).await?;
//!
//! // Row group 0 of the shard with the same row group of the task.
//! let rg = ds.read_row_group(added.shard, 0, &["cls"], None).await?;
//! assert_eq!(rg.images.len(), 2);
//! assert!(rg.labels["cls"][0].is_none());
//! assert!(matches!(&rg.labels["cls"][1], Some(Label::Classification(_))));
//! # Ok::<(), must_ds::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Modules, in the order data flows
//!
//! * [`format`](mod@format): task definitions, log actions, Arrow schemas.
//! * [`codec`]: typed labels, their value checks, labels ↔ Arrow.
//! * [`store`]: URLs → object stores, commits, checkpoints, snapshots.
//! * [`write`](mod@write) and [`ingest`]: image shard and label writers; parallel ingest.
//! * [`read`]: row groups of aligned files with projection.
//! * [`loader`]: deterministic, resumable, prefetching mixed-task batches.
//! * `torch` (feature `tch`): batches as libtorch tensors on a device.
//! * [`teacher`]: the teacher model contract; `teacher::label` (feature
//!   `tch`) runs TorchScript teachers over shards.
//! * [`audit`]: statistics per task, validation of every file, rendering.
//! * [`demo`]: the demo dataset (bundled photos, demonstration teachers),
//!   the fixture of tests, benchmarks and examples.
//!
//! The `must-ds` command (`src/cli`, in the binary) only parses arguments
//! and calls these modules.
#![warn(missing_docs)]

pub mod codec;
pub mod demo;
pub mod error;
pub mod format;
pub mod ingest;
pub mod loader;
pub mod read;
pub mod redact;
pub mod store;
pub mod teacher;
#[cfg(feature = "tch")]
pub mod torch;
pub mod write;

pub use error::{Error, Result};
pub use store::{Dataset, DatasetOptions, Snapshot, Transaction};
pub mod audit;
