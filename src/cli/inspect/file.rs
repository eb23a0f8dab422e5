//! `must-ds inspect FILE.parquet`: one lone Parquet file of a dataset, from
//! its footer and metadata.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use must_ds::format::{
    logical_type_name, TaskDef, TaskKind, META_FORMAT_VERSION, META_TABLE, META_TASK,
};
use must_ds::redact::{printable, redact};

use super::{describe_kind, line, mib, pct};

/// Summary of a lone Parquet file.
#[derive(Debug, Serialize)]
pub struct FileSummary {
    /// The file.
    pub file: String,
    /// `must.table`.
    pub table: Option<String>,
    /// `must.format_version`.
    pub format_version: Option<String>,
    /// `must.task`, for label files.
    pub task: Option<TaskDef>,
    /// Rows.
    pub rows: u64,
    /// Rows per row group.
    pub row_groups: Vec<u64>,
    /// File size.
    pub bytes: u64,
    /// Columns and their logical types.
    pub columns: BTreeMap<String, String>,
    /// Non-null label rows (label files).
    pub labeled: Option<u64>,
    /// Rows per source (image shards).
    pub sources: Option<BTreeMap<String, u64>>,
}

pub(super) fn summarize_file(path: &str) -> anyhow::Result<FileSummary> {
    let shown = printable(&redact(path));
    let bytes = std::fs::read(path).with_context(|| format!("reading {shown}"))?;
    let len = bytes.len() as u64;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .with_context(|| format!("{shown}: not a readable Parquet file"))?;
    let meta = builder.metadata().clone();
    let kv = |k: &str| {
        meta.file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone()))
    };
    let task: Option<TaskDef> = match kv(META_TASK) {
        Some(t) => Some(
            serde_json::from_str(&t)
                .with_context(|| format!("{shown}: {META_TASK} is not a task definition"))?,
        ),
        None => None,
    };
    let columns = builder
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), logical_type_name(f.data_type())))
        .collect();
    let table = kv(META_TABLE);
    // Count labeled rows (or sources) from one small column only.
    let key_col = match (&table.as_deref(), &task) {
        (Some("images"), _) => Some("source"),
        (_, Some(t)) => Some(match &t.kind {
            TaskKind::Classification { .. } => "probs",
            TaskKind::Detection { .. } => "scores",
            TaskKind::Segmentation { .. } => "mask_height",
            TaskKind::Depth { .. } => "depth_height",
        }),
        _ => None,
    };
    let mut labeled = None;
    let mut sources = None;
    if let Some(col) = key_col {
        if let Some(idx) = builder
            .schema()
            .fields()
            .iter()
            .position(|f| f.name() == col)
        {
            let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [idx]);
            let reader = builder.with_projection(mask).build()?;
            let mut count = 0u64;
            let mut by_source = BTreeMap::new();
            for batch in reader {
                let batch = batch.with_context(|| format!("{shown}: reading column {col}"))?;
                let arr = batch.column(0);
                count = count.saturating_add((arr.len() - arr.null_count()) as u64);
                if col == "source" {
                    let arr = arrow_cast::cast(arr, &arrow_schema::DataType::Utf8)?;
                    let arr = arrow_array::cast::AsArray::as_string::<i32>(&arr);
                    for s in arr.iter().flatten() {
                        let e = by_source.entry(s.to_owned()).or_insert(0u64);
                        *e = e.saturating_add(1);
                    }
                }
            }
            if col == "source" {
                sources = Some(by_source)
            } else {
                labeled = Some(count)
            }
        }
    }
    // Row counts of the footer are i64: a negative one shows as 0, not 2^64 - 1.
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(FileSummary {
        file: redact(path),
        table,
        format_version: kv(META_FORMAT_VERSION),
        task,
        rows: count(meta.file_metadata().num_rows()),
        row_groups: meta
            .row_groups()
            .iter()
            .map(|g| count(g.num_rows()))
            .collect(),
        bytes: len,
        columns,
        labeled,
        sources,
    })
}

pub(super) fn print_file(s: &FileSummary, out: &mut impl Write) -> std::io::Result<()> {
    line(out, &format!("file      {} ({})", s.file, mib(s.bytes)))?;
    line(
        out,
        &format!(
            "table     {} (format version {})",
            s.table
                .as_deref()
                .unwrap_or("unknown: no must.table metadata"),
            s.format_version.as_deref().unwrap_or("?")
        ),
    )?;
    if let Some(t) = &s.task {
        line(
            out,
            &format!(
                "task      {} ({}): {}",
                t.name,
                t.kind.name(),
                describe_kind(t)
            ),
        )?;
        let teacher = t
            .teacher
            .as_ref()
            .map_or("(not recorded)".into(), |x| x.describe());
        line(out, &format!("teacher   {teacher}"))?;
    }
    line(
        out,
        &format!(
            "rows      {} in {} row group(s) {:?}",
            s.rows,
            s.row_groups.len(),
            s.row_groups
        ),
    )?;
    if let Some(l) = s.labeled {
        line(
            out,
            &format!("labeled   {l}/{} rows ({:.1}%)", s.rows, pct(l, s.rows)),
        )?;
    }
    if let Some(src) = &s.sources {
        let v: Vec<String> = src.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        line(out, &format!("sources   {}", v.join(", ")))?;
    }
    line(out, "columns")?;
    for (name, ty) in &s.columns {
        line(out, &format!("  {name}: {ty}"))?;
    }
    Ok(())
}
