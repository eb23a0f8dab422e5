//! `must-ds inspect`: a dataset summary from its snapshot alone (no data
//! file is read), or one lone Parquet file from its footer and metadata
//! ([`file`]); with `--stats`, statistics of the labels ([`stats`]).

mod file;
mod stats;

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use serde::Serialize;

use must_ds::audit::{label_file_stats, StatsOptions};
use must_ds::format::{TaskDef, TaskKind};
use must_ds::redact::{printable, redact};
use must_ds::store::{Dataset, Snapshot};

#[derive(clap::Args, Debug)]
pub(crate) struct InspectArgs {
    /// Dataset root, or a .parquet file of a dataset.
    target: String,
    /// Open this version instead of the latest.
    #[arg(long)]
    version: Option<u64>,
    /// Print JSON for machines.
    #[arg(long)]
    json: bool,
    /// Read the labels: class histograms, score, box, pixel and depth distributions, coverage.
    #[arg(long)]
    stats: bool,
    /// With --stats: only this task (repeat for more).
    #[arg(long = "task")]
    tasks: Vec<String>,
    /// With --stats: only image shards in this range (K, A..B, A-B; inclusive).
    #[arg(long)]
    shards: Option<String>,
    /// With --stats: a uniform sample of this many rows instead of all.
    #[arg(long)]
    sample: Option<u64>,
    /// Seed of the sample.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub(crate) fn run(
    a: InspectArgs,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let target = &a.target;
    let lone = target.ends_with(".parquet") && std::path::Path::new(target).is_file();
    if a.stats && lone {
        let bytes = std::fs::read(target).with_context(|| format!("reading {target}"))?;
        let st = label_file_stats(bytes.into(), target)?;
        if a.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&st)?)?;
        } else {
            stats::print_stats(&st, out)?;
        }
        return Ok(());
    }
    if lone {
        let s = file::summarize_file(target)?;
        if a.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
        } else {
            file::print_file(&s, out)?;
        }
        return Ok(());
    }
    let ds = match a.version {
        Some(v) => rt.block_on(Dataset::open_at(target, v))?,
        None => rt.block_on(Dataset::open(target))?,
    };
    if a.stats {
        let opts = StatsOptions {
            tasks: (!a.tasks.is_empty()).then_some(a.tasks),
            shards: a.shards.as_deref().map(super::parse_range).transpose()?,
            sample: a.sample,
            seed: a.seed,
            parallel: 4,
        };
        return stats::stats(&ds, opts, a.json, rt, out);
    }
    let s = summarize(ds.url(), ds.snapshot());
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
    } else {
        print_summary(&s, out)?;
    }
    Ok(())
}

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

pub(crate) fn mib(b: u64) -> String {
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
