//! `must-ds` and its subcommands: one module each, with its arguments and
//! its `run`. `anyhow` and exit codes live only here.

mod add_labels;
mod bench;
mod demo;
mod ingest;
mod init;
mod inspect;
#[cfg(feature = "tch")]
mod label;
mod log;
mod render;
mod task;
mod vacuum;
mod validate;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

const ABOUT: &str = "must-ds: the pseudo-label store of multi-task self-training.

Teachers (classification, detection, segmentation, depth) label an image
corpus; must-ds stores images and labels as aligned Parquet shards under a
commit log, on a local folder or an object store (s3://, gs://, az://).

Start with `must-ds demo`, then `must-ds inspect must-demo`.";

/// The command line.
#[derive(Parser, Debug)]
#[command(name = "must-ds", version, about = ABOUT, long_about = ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The largest image, in pixels, that any command decodes (ingest,
    /// validate, render, label, bench); larger ones are refused from their
    /// header, before any allocation, as corrupt data. Default: the
    /// environment variable MUST_MAX_IMAGE_PIXELS, else 89478485 (Pillow's).
    #[arg(long, global = true, value_name = "N")]
    max_image_pixels: Option<u64>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create an empty dataset.
    ///
    /// Example: must-ds init /data/corpus --name jft-mini
    Init(init::InitArgs),
    /// Define tasks.
    Task(task::TaskArgs),
    /// Add images from a folder or a list of paths, as image shards.
    ///
    /// Example: must-ds ingest /data/corpus --from ./photos --source jft --workers 8
    Ingest(ingest::IngestArgs),
    /// Add labels written by any tool or engine (DuckDB, Spark, Ray, pyarrow):
    /// rows are matched to image shards by image_id, in any order and row
    /// grouping, across any number of files and shards.
    ///
    /// Each shard gets an aligned copy (its order and row groups; ids the
    /// input does not mention are absent labels) committed on its own, so an
    /// interrupted run leaves whole shards: rerun with --skip-labeled. An id
    /// the dataset does not have, or one that appears twice, is an error
    /// naming the file and row. A file already aligned with --shard is
    /// checked and committed as it is.
    ///
    /// Examples:
    ///   must-ds add-labels /data/corpus --task det --shard 3 det-3.parquet
    ///   must-ds add-labels /data/corpus --task det det.parquet            (DuckDB COPY output)
    ///   must-ds add-labels /data/corpus --task det spark-out/ --skip-labeled
    ///   must-ds add-labels /data/corpus --task det 'out/**/*.parquet' --map boxes=pred_boxes,scores=conf --box-format xywh
    AddLabels(add_labels::AddLabelsArgs),
    /// Summarize a dataset (tasks, shards, coverage) or one lone Parquet file;
    /// with --stats, read the labels and report what an auditor looks for.
    ///
    /// Examples:
    ///   must-ds inspect /data/corpus --json
    ///   must-ds inspect /data/corpus --stats --task det --shards 0..9 --sample 10000
    Inspect(inspect::InspectArgs),
    /// Check every data file: checksums, alignment of labels with shards,
    /// values in range, that every image decodes and every file exists.
    /// Prints one line per problem; exits with 1 when there is any.
    ///
    /// Example: must-ds validate /data/corpus --json
    Validate(validate::ValidateArgs),
    /// Draw a sample with its labels (boxes with class names, segmentation
    /// with a legend, depth in a colormap, side by side), or a contact sheet.
    ///
    /// Examples:
    ///   must-ds render /data/corpus --image-id jft/000123.jpg --out sample.png
    ///   must-ds render /data/corpus --grid 8 --out sheet.png
    Render(render::RenderArgs),
    /// Show the commit history.
    ///
    /// Example: must-ds log /data/corpus
    Log(log::LogArgs),
    /// Delete data files that no commit references (left by crashed or
    /// losing writers) once they are older than a grace period.
    ///
    /// Example: must-ds vacuum /data/corpus --older-than 7d --dry-run
    Vacuum(vacuum::VacuumArgs),
    /// Run a TorchScript teacher over the image shards that have no labels
    /// for the task yet; one aligned label file committed per shard.
    /// Preprocessing and post-processing follow the task's teacher params.
    ///
    /// Example: must-ds label /data/corpus --task det --model det.pt --device cuda:0 --worker auto --steal
    #[cfg(feature = "tch")]
    Label(label::LabelArgs),
    /// Measure the loader: samples/s, where the time goes, peak memory, and
    /// decoding the same images alone for comparison.
    ///
    /// Example: must-ds bench must-demo --batch-size 32 --size 384 --workers 2
    Bench(bench::BenchArgs),
    /// Build a demo dataset from bundled photos with demonstration teachers.
    ///
    /// Example: must-ds demo ./must-demo
    Demo(demo::DemoArgs),
}

/// Runs the command line; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    if let Some(n) = cli.max_image_pixels {
        must_ds::codec::set_max_image_pixels(n);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    match run(cli.command, &rt) {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return 0;
            }
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            1
        }
    }
}

/// Runs one command; returns the exit code (0, or 1 when `validate` found problems).
fn run(command: Command, rt: &tokio::runtime::Runtime) -> anyhow::Result<i32> {
    let out = &mut std::io::stdout().lock();
    match command {
        Command::Init(a) => init::run(a, rt, out)?,
        Command::Task(a) => task::run(a, rt, out)?,
        Command::Ingest(a) => ingest::run(a, rt, out)?,
        Command::AddLabels(a) => add_labels::run(a, rt, out)?,
        Command::Inspect(a) => inspect::run(a, rt, out)?,
        Command::Validate(a) => return validate::run(a, rt, out),
        Command::Render(a) => render::run(a, rt, out)?,
        Command::Log(a) => log::run(a, rt, out)?,
        Command::Vacuum(a) => vacuum::run(a, rt, out)?,
        #[cfg(feature = "tch")]
        Command::Label(a) => label::run(a, rt, out)?,
        Command::Bench(a) => bench::run(a, rt, out)?,
        Command::Demo(a) => demo::run(a, rt, out)?,
    }
    Ok(0)
}

/// Parses `A..B` (inclusive), `A-B` or `K` into an inclusive shard range
/// (`--shards` of `inspect --stats` and `label`).
pub(crate) fn parse_range(s: &str) -> anyhow::Result<(u64, u64)> {
    let parse = |x: &str| {
        x.trim()
            .parse::<u64>()
            .with_context(|| format!("--shards {s:?}: use K, A..B or A-B"))
    };
    let (a, b) = match s.split_once("..").or_else(|| s.split_once('-')) {
        Some((a, b)) => (parse(a)?, parse(b.trim_start_matches('='))?),
        None => (parse(s)?, parse(s)?),
    };
    if a > b {
        bail!("--shards {s:?}: the range is empty");
    }
    Ok((a, b))
}

/// A progress bar on stderr: `len` items (0: set later) of `what`, which
/// may hold indicatif's template keys (`{msg}`, `{per_sec}`).
pub(crate) fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} [{{elapsed_precise}}, eta {{eta}}]"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Threads by default: the cores this process may use (2 when unknown).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
