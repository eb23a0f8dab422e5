//! Integration tests of must-ds, in one binary with shared helpers.

mod util;

mod align;
mod audit;
mod bad_input;
mod cli;
mod concurrency;
mod conformance;
mod crashes;
mod faults;
mod format_doc;
mod format_doc_log;
mod fuzz_regressions;
mod hostile;
mod hostile_log;
mod layers;
mod loader;
mod loader_augment;
mod loader_corrupt;
mod loader_mixing;
mod loader_options;
mod loader_semantics;
mod python;
mod s3;
mod safety;
mod safety_ingest;
mod scale;
#[cfg(feature = "tch")]
mod sched;
mod schemas;
mod store;
#[cfg(feature = "tch")]
mod teacher;
#[cfg(feature = "tch")]
mod teacher_probes;
#[cfg(feature = "tch")]
mod torch;
mod writers;
mod writers_many;
