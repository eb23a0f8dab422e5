//! Arbitrary bytes as a Parquet label file, all in memory: the crate's
//! reader of a lone label file (task from the `must.task` metadata), its
//! Arrow → label decoding and value checks for several task definitions,
//! and the admission check of a label file. Errors are fine; panics and
//! unbounded allocations are not. Reads are bounded (rows and batch size).
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use must_ds::codec::{batch_to_labels, LabelColumns};
use must_ds::error::Location;
use must_ds::format::TaskDef;
use must_ds::write::check_label_file;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};

const FILE: &str = "labels/fuzz/part-00000000-0000-0000-0000-000000000000.parquet";
/// Rows decoded per file and task at most.
const MAX_ROWS: usize = 1024;
/// Rows per record batch.
const BATCH: usize = 64;

/// The demo dataset's tasks (names as in the seed files' metadata, so that
/// the admission check gets past its task comparison), and variants of
/// them with the other encodings and dtypes.
const TASKS: &[&str] = &[
    r#"{"name":"scene-color","kind":"classification","num_classes":8,"encoding":"topk"}"#,
    r#"{"name":"scene-color","kind":"classification","num_classes":8,"encoding":"dense"}"#,
    r#"{"name":"scene-color","kind":"classification","num_classes":8,"encoding":"topk","multi_label":true}"#,
    r#"{"name":"bright-regions","kind":"detection","num_classes":2,"min_score_written":0.2}"#,
    r#"{"name":"luma-bands","kind":"segmentation","num_classes":4,"dtype":"u8"}"#,
    r#"{"name":"luma-bands","kind":"segmentation","num_classes":300,"dtype":"u16","ignore_index":65535}"#,
    r#"{"name":"vertical-depth","kind":"depth","representation":"inverse_relative"}"#,
    r#"{"name":"vertical-depth","kind":"depth","representation":"metric","unit":"m"}"#,
];

fn tasks() -> &'static [TaskDef] {
    static T: OnceLock<Vec<TaskDef>> = OnceLock::new();
    T.get_or_init(|| {
        TASKS
            .iter()
            .map(|t| TaskDef::from_json(t).expect("fuzz task definitions are valid"))
            .collect()
    })
}

/// Decodes up to MAX_ROWS rows as labels of `task`, both ways the crate
/// reads them (owned labels with `validate`, borrowed with `check`).
/// Returns the image ids of the rows that decoded, in order.
fn decode(task: &TaskDef, builder: ParquetRecordBatchReaderBuilder<Bytes>) -> Vec<String> {
    let loc = Location::file(FILE);
    let mut ids = Vec::new();
    let Ok(reader) = builder.with_batch_size(BATCH).with_limit(MAX_ROWS).build() else {
        return ids;
    };
    let mut row = 0usize;
    for batch in reader.take(MAX_ROWS / BATCH + 1) {
        let Ok(batch) = batch else { break };
        if let Ok(cols) = LabelColumns::new(task, &batch, &loc, row) {
            for i in 0..cols.len() {
                let _ = cols.image_id(i);
                let _ = cols.location(i);
                if let Ok(Some(label)) = cols.get(i) {
                    let _ = label.kind_name();
                    let _ = label.check(task);
                }
            }
        }
        match batch_to_labels(task, &batch, &loc, row) {
            Ok((got, labels)) => {
                for (i, label) in labels.iter().enumerate() {
                    if let Some(l) = label {
                        let _ = l.validate(task, &loc.at(row + i, Some(&got[i])));
                        let _ = l.check(task);
                    }
                }
                ids.extend(got);
            }
            Err(_) => break,
        }
        row += batch.num_rows();
    }
    ids
}

/// The admission check, with the ids decoded (it reads the whole file only
/// when the metadata's row count is theirs, so at most MAX_ROWS rows).
fn admit(task: &TaskDef, meta: &ArrowReaderMetadata, ids: &[String], bytes: &Bytes) {
    let groups: Vec<u64> = meta
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows() as u64)
        .collect();
    // For an empty image shard first: the file's row counts are summed and
    // compared before anything is read.
    let _ = check_label_file(task, 0, &[], &[], bytes.clone(), FILE);
    let _ = check_label_file(task, 0, ids, &groups, bytes.clone(), FILE);
    if ids.len() > 1 {
        // The same rows in another order: a misalignment, reported.
        let mut other = ids.to_vec();
        other.rotate_left(1);
        let _ = check_label_file(task, 0, &other, &groups, bytes.clone(), FILE);
    }
}

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);

    // The crate's reader of a label file on its own. The admission check
    // comes first, as for a new label file, on what the decoding reads.
    if let Ok((task, builder)) = must_ds::read::lone_label_file(bytes.clone(), FILE, "fuzzing") {
        let meta = ArrowReaderMetadata::try_new(builder.metadata().clone(), Default::default());
        let _ = check_label_file(&task, 0, &[], &[], bytes.clone(), FILE);
        let ids = decode(&task, builder);
        if let Ok(meta) = meta {
            admit(&task, &meta, &ids, &bytes);
        }
    }

    // Fixed task definitions, on metadata parsed once.
    let Ok(meta) = ArrowReaderMetadata::load(&bytes, Default::default()) else {
        return;
    };
    // As every reader of the crate does before building a reader: parquet-rs
    // sums the footer's row counts unchecked.
    if must_ds::read::check_footer_counts(meta.metadata(), FILE).is_err() {
        return;
    }
    for task in tasks() {
        let builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), meta.clone());
        let ids = decode(task, builder);
        admit(task, &meta, &ids, &bytes);
    }
});
