//! Admission checks for a label file made by any tool: readable Parquet,
//! column names and logical types, alignment with the image shard (ids,
//! order, row groups) and every value, each error naming file, row and id.

use std::collections::HashMap;

use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::codec::batch_to_labels;
use crate::error::{Error, Location, Result};
use crate::format::{TaskDef, META_TABLE, META_TASK};

/// What a checked label file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFileReport {
    /// Rows.
    pub rows: u64,
    /// Non-null rows.
    pub labeled: u64,
    /// Rows per row group.
    pub row_groups: Vec<u64>,
}

/// Checks `bytes` (named `file` in errors) as the label file of `task` for
/// image shard `shard`, whose ids in order are `ids` and whose row groups
/// are `row_groups`.
pub fn check_label_file(
    task: &TaskDef,
    shard: u64,
    ids: &[String],
    row_groups: &[u64],
    bytes: Bytes,
    file: &str,
) -> Result<LabelFileReport> {
    let loc = Location::file(file);
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| Error::parquet(file, e))?;
    let meta = builder.metadata().clone();
    crate::format::check_footer_counts(&meta, file)?;
    if let Some(kv) = meta.file_metadata().key_value_metadata() {
        let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
        if let Some(table) = get(META_TABLE) {
            if table != "labels" {
                return Err(Error::schema(
                    loc,
                    format!("{META_TABLE} is {table:?}, not \"labels\""),
                ));
            }
        }
        if let Some(text) = get(META_TASK) {
            let theirs: TaskDef = serde_json::from_str(&text).map_err(|e| {
                Error::schema(
                    loc.clone(),
                    format!("{META_TASK} is not a task definition: {e}"),
                )
            })?;
            if theirs.name != task.name || theirs.kind.name() != task.kind.name() {
                return Err(Error::schema(
                    loc,
                    format!(
                        "written for task {:?} ({}), not {:?} ({})",
                        theirs.name,
                        theirs.kind.name(),
                        task.name,
                        task.kind.name()
                    ),
                ));
            }
        }
    }
    let misaligned = |location: Location, reason: String| Error::Misaligned {
        location,
        shard,
        reason,
    };
    let groups: Vec<u64> = meta
        .row_groups()
        .iter()
        .map(|g| u64::try_from(g.num_rows()).unwrap_or(u64::MAX))
        .collect();
    let rows: u64 = groups.iter().fold(0u64, |a, &n| a.saturating_add(n));
    if rows != ids.len() as u64 {
        return Err(misaligned(
            loc,
            format!(
                "the file has {rows} rows, the image shard has {}",
                ids.len()
            ),
        ));
    }
    if groups != row_groups {
        return Err(misaligned(
            loc,
            format!("row groups of {groups:?} rows, the image shard has {row_groups:?}"),
        ));
    }
    let position: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let reader = builder
        .with_batch_size(8192)
        .build()
        .map_err(|e| Error::parquet(file, e))?;
    let mut row = 0usize;
    let mut labeled = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| Error::arrow(file, e))?;
        let (got, labels) = batch_to_labels(task, &batch, &loc, row)?;
        for (i, (id, label)) in got.iter().zip(&labels).enumerate() {
            let r = row + i;
            if r >= ids.len() {
                return Err(misaligned(
                    loc.at(r, Some(id)),
                    format!(
                        "the file holds more rows than its footer says ({}); the image shard has {}",
                        rows,
                        ids.len()
                    ),
                ));
            }
            if *id != ids[r] {
                let reason = match position.get(id.as_str()) {
                    Some(s) => format!(
                        "image_id is at row {s} of the image shard (another order); expected {:?}",
                        ids[r]
                    ),
                    None => format!("image_id is not in the image shard; expected {:?}", ids[r]),
                };
                return Err(misaligned(loc.at(r, Some(id)), reason));
            }
            if let Some(l) = label {
                l.validate(task, &loc.at(r, Some(id)))?;
                labeled += 1;
            }
        }
        row += batch.num_rows();
    }
    Ok(LabelFileReport {
        rows,
        labeled,
        row_groups: groups,
    })
}
