//! `must-ds inspect`: a dataset summary from its snapshot alone (no data
//! file is read), or one lone Parquet file from its footer and metadata.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use must_ds::format::{
    logical_type_name, Action, Commit, TaskDef, TaskKind, META_FORMAT_VERSION, META_TABLE,
    META_TASK,
};
use must_ds::redact::{printable, redact};
use must_ds::store::{Dataset, Snapshot};

/// Writes one line of text built from strings of the log or of a file:
/// control characters (ANSI escapes, `\r`...) are escaped, so that no
/// value can rewrite the terminal.
pub(crate) fn line(out: &mut (impl Write + ?Sized), text: &str) -> std::io::Result<()> {
    writeln!(out, "{}", printable(text))
}

/// Sum of counts read from the log, for display: saturates at 2^64 - 1
/// rather than wrapping (or panicking in debug builds).
fn saturating_sum(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().fold(0u64, u64::saturating_add)
}

/// Coverage of one task.
#[derive(Debug, Serialize)]
pub struct TaskSummary {
    /// The definition.
    pub definition: TaskDef,
    /// Image shards with a label file.
    pub shards_labeled: usize,
    /// Image shards in the dataset.
    pub shards_total: usize,
    /// Non-null label rows.
    pub rows_labeled: u64,
    /// Image rows in the dataset.
    pub rows_total: u64,
    /// Bytes of the task's label files.
    pub bytes: u64,
}

/// What `inspect ROOT --json` prints.
#[derive(Debug, Serialize)]
pub struct DatasetSummary {
    /// Dataset URL.
    pub url: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Version.
    pub version: u64,
    /// Time of that version's commit.
    pub timestamp: String,
    /// Image shards.
    pub image_shards: usize,
    /// Image rows.
    pub rows: u64,
    /// Image shard bytes.
    pub image_bytes: u64,
    /// Rows per source.
    pub sources: BTreeMap<String, u64>,
    /// Tasks by name.
    pub tasks: BTreeMap<String, TaskSummary>,
}

/// Summarizes a snapshot. Counts are summed saturating: they come from
/// the log, where a hostile writer may put any u64.
pub fn summarize(url: &str, snap: &Snapshot) -> DatasetSummary {
    let mut sources = BTreeMap::new();
    for a in snap.images.values() {
        for (s, n) in &a.sources {
            let e = sources.entry(s.clone()).or_insert(0u64);
            *e = e.saturating_add(*n);
        }
    }
    let tasks = snap
        .tasks
        .values()
        .map(|t| {
            let files: Vec<_> = snap
                .labels
                .iter()
                .filter(|((name, _), _)| name == &t.name)
                .map(|(_, l)| l)
                .collect();
            let summary = TaskSummary {
                definition: t.clone(),
                shards_labeled: files.len(),
                shards_total: snap.images.len(),
                rows_labeled: saturating_sum(files.iter().map(|l| l.labeled)),
                rows_total: snap.total_rows(),
                bytes: saturating_sum(files.iter().map(|l| l.bytes)),
            };
            (t.name.clone(), summary)
        })
        .collect();
    DatasetSummary {
        url: redact(url),
        name: snap.info.name.clone(),
        description: snap.info.description.clone(),
        version: snap.version,
        timestamp: snap.timestamp.clone(),
        image_shards: snap.images.len(),
        rows: snap.total_rows(),
        image_bytes: saturating_sum(snap.images.values().map(|a| a.bytes)),
        sources,
        tasks,
    }
}

fn mib(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1048576 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1048576.0),
    }
}

/// The name serde writes for a unit enum value (`topk`, `u8`, `inverse_relative`).
fn wire<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

fn describe_kind(t: &TaskDef) -> String {
    let classes = |n: u32| {
        let names = t.kind.class_names().map(|names| {
            let shown: Vec<&str> = names.iter().take(8).map(|s| s.as_str()).collect();
            let more = if names.len() > 8 {
                format!(", … {} more", names.len() - 8)
            } else {
                String::new()
            };
            format!(": {}{more}", shown.join(", "))
        });
        format!("{n} classes{}", names.unwrap_or_default())
    };
    match &t.kind {
        TaskKind::Classification {
            num_classes,
            encoding,
            multi_label,
            ..
        } => format!(
            "{}, {} encoding{}",
            classes(*num_classes),
            wire(encoding),
            if *multi_label { ", multi-label" } else { "" }
        ),
        TaskKind::Detection {
            num_classes,
            min_score_written,
            ..
        } => {
            format!(
                "{}, min_score_written {min_score_written}",
                classes(*num_classes)
            )
        }
        TaskKind::Segmentation {
            num_classes,
            dtype,
            ignore_index,
            ..
        } => {
            format!(
                "{}, {} masks, ignore_index {ignore_index}",
                classes(*num_classes),
                wire(dtype)
            )
        }
        TaskKind::Depth {
            representation,
            unit,
        } => {
            format!(
                "{}{}",
                wire(representation),
                unit.as_ref()
                    .map(|u| format!(" in {u}"))
                    .unwrap_or_default()
            )
        }
    }
}

/// Prints a summary for humans (strings from the log escaped: see [`line`]).
pub fn print_summary(s: &DatasetSummary, out: &mut impl Write) -> std::io::Result<()> {
    line(out, &format!("dataset   {} ({})", s.name, redact(&s.url)))?;
    if !s.description.is_empty() {
        line(out, &format!("          {}", s.description))?;
    }
    line(out, &format!("version   {} ({})", s.version, s.timestamp))?;
    let sources: Vec<String> = s.sources.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    line(
        out,
        &format!(
            "images    {} shard(s), {} rows, {}; sources: {}",
            s.image_shards,
            s.rows,
            mib(s.image_bytes),
            if sources.is_empty() {
                "none".into()
            } else {
                sources.join(", ")
            }
        ),
    )?;
    line(out, &format!("tasks     {}", s.tasks.len()))?;
    for (name, t) in &s.tasks {
        line(out, &format!("  {name} ({})", t.definition.kind.name()))?;
        line(out, &format!("      {}", describe_kind(&t.definition)))?;
        let teacher = t
            .definition
            .teacher
            .as_ref()
            .map_or("(not recorded)".into(), |x| x.describe());
        line(out, &format!("      teacher: {teacher}"))?;
        line(
            out,
            &format!(
                "      coverage: {}/{} shards, {}/{} rows labeled ({:.1}%), {}",
                t.shards_labeled,
                t.shards_total,
                t.rows_labeled,
                t.rows_total,
                pct(t.rows_labeled, t.rows_total),
                mib(t.bytes)
            ),
        )?;
    }
    Ok(())
}

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

fn summarize_file(path: &str) -> anyhow::Result<FileSummary> {
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

fn print_file(s: &FileSummary, out: &mut impl Write) -> std::io::Result<()> {
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

/// The first line of a commit, for `must-ds log`: version, time, operation
/// and writer, with control characters escaped (they come from the log).
pub fn describe_commit(c: &Commit) -> String {
    printable(&format!(
        "version {}  {}  {}  ({})",
        c.version, c.timestamp, c.operation, c.writer
    ))
}

/// What `must-ds log` prints: one JSON object per commit (serde escapes
/// every control character), or per commit a line ([`describe_commit`])
/// and a line per action ([`describe_action`]).
// Called by `must-ds log` in cli/mod.rs (until then, only by tests).
pub(crate) fn print_log(
    commits: &[Commit],
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    for c in commits {
        if json {
            writeln!(out, "{}", serde_json::to_string(c)?)?;
        } else {
            writeln!(out, "{}", describe_commit(c))?;
            for a in &c.actions {
                writeln!(out, "    {}", describe_action(a))?;
            }
        }
    }
    Ok(())
}

/// One line describing an action, for `must-ds log`, with control
/// characters escaped (names and paths come from the log).
pub fn describe_action(a: &Action) -> String {
    printable(&describe_action_raw(a))
}

fn describe_action_raw(a: &Action) -> String {
    match a {
        Action::Protocol(p) => format!(
            "protocol: reader {} writer {} features {:?}",
            p.reader_version, p.writer_version, p.features
        ),
        Action::Dataset(d) => format!("dataset: {:?}", d.name),
        Action::Task(t) => format!("task {:?} ({})", t.name, t.kind.name()),
        Action::AddImages(x) => format!(
            "add_images shard {}: {} rows, {}, {}",
            x.shard,
            x.rows,
            mib(x.bytes),
            x.path
        ),
        Action::AddLabels(x) => format!(
            "add_labels {:?} shard {}: {}/{} rows labeled, {}{}",
            x.task,
            x.shard,
            x.labeled,
            x.rows,
            x.path,
            if x.replace { " (replace)" } else { "" }
        ),
        Action::Remove(r) => format!("remove {}", r.path),
    }
}

pub(crate) fn run(
    target: &str,
    version: Option<u64>,
    json: bool,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if target.ends_with(".parquet") && std::path::Path::new(target).is_file() {
        let s = summarize_file(target)?;
        if json {
            writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
        } else {
            print_file(&s, out)?;
        }
        return Ok(());
    }
    let ds = match version {
        Some(v) => rt.block_on(Dataset::open_at(target, v))?,
        None => rt.block_on(Dataset::open(target))?,
    };
    let s = summarize(ds.url(), ds.snapshot());
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
    } else {
        print_summary(&s, out)?;
    }
    Ok(())
}
