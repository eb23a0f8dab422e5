//! `must-ds ingest`: images from a folder or a list of paths, as image shards.

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;

use must_ds::ingest::{collect_inputs, ingest, IngestOptions, Progress};
use must_ds::store::Dataset;

#[derive(clap::Args, Debug)]
pub(crate) struct IngestArgs {
    /// Dataset root.
    root: String,
    /// A folder (walked recursively) or a text file with one path per line.
    #[arg(long)]
    from: PathBuf,
    /// Source corpus name stored with every image, e.g. jft, imagenet-train.
    #[arg(long)]
    source: String,
    /// Parallel workers (default: number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Fail if any file is not a readable image, before committing anything.
    #[arg(long)]
    strict: bool,
    /// Skip files whose image id the dataset already has for this source,
    /// so that rerunning an interrupted ingest finishes it.
    #[arg(long)]
    skip_existing: bool,
    /// Start a new shard past this many MiB of images.
    #[arg(long, default_value_t = 512)]
    shard_mb: usize,
    /// Close a row group past this many MiB of images.
    #[arg(long, default_value_t = 64)]
    row_group_mb: usize,
    /// Close a row group past this many rows.
    #[arg(long, default_value_t = 4096)]
    row_group_rows: usize,
    /// Start a new shard past this many rows.
    #[arg(long, default_value_t = 100_000)]
    shard_rows: usize,
}

pub(crate) fn run(
    a: IngestArgs,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let ds = rt.block_on(Dataset::open(&a.root))?;
    let collected = collect_inputs(&a.from, &a.source)?;
    if a.strict {
        if let Some(s) = collected.skipped.first() {
            bail!("{}: {} (--strict: nothing was ingested)", s.file, s.reason);
        }
    }
    let inputs = collected.images;
    if inputs.is_empty() {
        bail!("{}: no files to ingest", a.from.display());
    }
    let mut opts = IngestOptions::new(a.source);
    if let Some(w) = a.workers {
        opts.workers = w.max(1);
    }
    opts.strict = a.strict;
    opts.skip_existing = a.skip_existing;
    opts.shard.shard_bytes = a.shard_mb.max(1) << 20;
    opts.shard.row_group_bytes = a.row_group_mb.max(1) << 20;
    opts.shard.row_group_rows = a.row_group_rows.max(1);
    opts.shard.shard_rows = a.shard_rows.max(1);
    let bar = super::bar(inputs.len() as u64, "images, {msg}");
    let b = bar.clone();
    let progress: Progress = std::sync::Arc::new(move |n, bytes| {
        b.set_position(n);
        b.set_message(format!("{:.1} MiB", bytes as f64 / 1048576.0));
    });
    let mut report = ingest(rt.handle(), &ds, inputs, &opts, Some(progress))?;
    report.skipped.extend(collected.skipped);
    bar.finish_and_clear();
    writeln!(
        out,
        "ingested {} images ({:.1} MiB) into {} shard(s) in {:.2}s ({:.1} MiB/s)",
        report.images,
        report.image_bytes as f64 / 1048576.0,
        report.shards.len(),
        report.seconds,
        report.image_bytes as f64 / 1048576.0 / report.seconds
    )?;
    for s in &report.shards {
        writeln!(
            out,
            "  shard {}: {} rows, {} row group(s), {}",
            s.shard,
            s.rows,
            s.row_groups.len(),
            s.path
        )?;
    }
    if report.already_present > 0 {
        writeln!(
            out,
            "{} file(s) were already in the dataset and were skipped",
            report.already_present
        )?;
    }
    if !report.skipped.is_empty() {
        writeln!(
            out,
            "skipped {} file(s) that could not be ingested:",
            report.skipped.len()
        )?;
        for s in &report.skipped {
            writeln!(out, "  {}: {}", s.file, s.reason)?;
        }
    }
    Ok(())
}
