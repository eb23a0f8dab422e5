//! Every input that once crashed a fuzz target (`fuzz/regressions/`) is
//! replayed here through the same entry points, so that the suite catches
//! a regression without cargo-fuzz. Each must give an error or a report,
//! never a panic.

use std::path::PathBuf;

use bytes::Bytes;
use must_ds::format::{Commit, TaskDef};
use must_ds::write::check_label_file;
use must_ds::Snapshot;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::util;

const FILE: &str = "labels/fuzz/part-00000000-0000-0000-0000-000000000000.parquet";

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut out: Vec<_> = util::list_dir(&dir)
        .into_iter()
        .map(|p| {
            let b = util::read(&p);
            (p, b)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no regression inputs for {target}");
    out
}

#[test]
fn commit_json_regressions() {
    for (path, bytes) in inputs("commit_json") {
        if let Ok(c) = Commit::from_slice(&bytes, "f") {
            // Floats in task params round-trip exactly (a task must equal
            // itself after a checkpoint).
            let back = Commit::from_slice(&c.to_bytes(), "f").unwrap();
            assert_eq!(back, c, "{}", path.display());
            let _ = Snapshot::default().apply(&c, "f");
        }
    }
}

#[test]
fn label_file_regressions() {
    let tasks: Vec<TaskDef> = [
        r#"{"name":"scene-color","kind":"classification","num_classes":8,"encoding":"topk"}"#,
        r#"{"name":"scene-color","kind":"classification","num_classes":8,"encoding":"dense"}"#,
        r#"{"name":"bright-regions","kind":"detection","num_classes":2}"#,
        r#"{"name":"luma-bands","kind":"segmentation","num_classes":4,"dtype":"u8"}"#,
        r#"{"name":"luma-bands","kind":"segmentation","num_classes":300,"dtype":"u16","ignore_index":65535}"#,
        r#"{"name":"vertical-depth","kind":"depth","representation":"inverse_relative"}"#,
    ]
    .iter()
    .map(|t| TaskDef::from_json(t).unwrap())
    .collect();
    for (path, bytes) in inputs("label_file") {
        let bytes = Bytes::from(bytes);
        let report = must_ds::audit::validate_label_file(bytes.clone(), FILE);
        let lone = must_ds::read::lone_label_file(bytes.clone(), FILE, "testing");
        let mut all = tasks.clone();
        if let Ok((t, _)) = lone {
            all.push(t);
        }
        for task in &all {
            let _ = check_label_file(task, 0, &[], &[], bytes.clone(), FILE);
            let Ok(b) = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()) else {
                continue;
            };
            let groups: Vec<u64> = b
                .metadata()
                .row_groups()
                .iter()
                .map(|g| g.num_rows().max(0) as u64)
                .collect();
            let mut ids = vec![];
            let loc = must_ds::error::Location::file(FILE);
            if let Ok(r) = b.with_batch_size(64).with_limit(1024).build() {
                let mut row = 0;
                for batch in r.take(17) {
                    let Ok(batch) = batch else { break };
                    if let Ok((got, labels)) =
                        must_ds::codec::batch_to_labels(task, &batch, &loc, row)
                    {
                        for l in labels.iter().flatten() {
                            let _ = l.check(task);
                        }
                        ids.extend(got);
                    }
                    if let Ok(cols) = must_ds::codec::LabelColumns::new(task, &batch, &loc, row) {
                        for i in 0..cols.len() {
                            if let Ok(Some(l)) = cols.get(i) {
                                let _ = l.check(task);
                            }
                        }
                    }
                    row += batch.num_rows();
                }
            }
            let _ = check_label_file(task, 0, &ids, &groups, bytes.clone(), FILE);
        }
        assert!(report.files == 1, "{}", path.display());
    }
}

#[test]
fn loader_state_regressions_parse_and_round_trip() {
    for (path, bytes) in inputs("loader_state") {
        // Each regression is a state that parses (the bug was in resuming
        // from it): one that no longer parses would test nothing.
        let s = serde_json::from_slice::<must_ds::loader::LoaderState>(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let json = serde_json::to_vec(&s).unwrap();
        let back: must_ds::loader::LoaderState = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, s, "{}", path.display());
    }
}
