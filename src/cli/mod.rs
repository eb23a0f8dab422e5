//! `must-ds` subcommands. `anyhow` and exit codes live only here.

mod add_labels;
mod audit;
mod bench;
pub mod demo;
mod inspect;
mod task;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use must_ds::format::DatasetInfo;
use must_ds::ingest::{collect_inputs, ingest, IngestOptions};
use must_ds::store::Dataset;

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
    Init {
        /// Dataset root: a folder, file://, s3://bucket/prefix, gs://, az://.
        root: String,
        /// Dataset name (default: the folder name).
        #[arg(long)]
        name: Option<String>,
        /// Free-text description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Define tasks.
    Task {
        #[command(subcommand)]
        command: task::TaskCommand,
    },
    /// Add images from a folder or a list of paths, as image shards.
    ///
    /// Example: must-ds ingest /data/corpus --from ./photos --source jft --workers 8
    Ingest {
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
    },
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
    AddLabels {
        /// Dataset root.
        root: String,
        /// Task name.
        #[arg(long)]
        task: String,
        /// Only this image shard (default: every shard, matched by image_id).
        #[arg(long)]
        shard: Option<u64>,
        /// Parquet files, folders of part files (Hive partition folders
        /// included; names starting with `.` or `_` skipped) or globs (`*`,
        /// `?`, `**`), local or on a store (s3://…).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Replace labels the shards already have for this task.
        #[arg(long, conflicts_with = "skip_labeled")]
        replace: bool,
        /// Leave shards that already have labels for this task as they are.
        #[arg(long)]
        skip_labeled: bool,
        /// Column names of the input: COLUMN=INPUT_COLUMN, comma separated
        /// (e.g. boxes=pred_boxes,scores=conf,image_id=key).
        #[arg(long, value_delimiter = ',', value_name = "COLUMN=INPUT")]
        map: Vec<String>,
        /// Boxes as x0,y0,x1,y1 pixels (xyxy), x,y,w,h pixels (xywh), or
        /// x0,y0,x1,y1 fractions of the image size (xyxy-normalized).
        #[arg(long, default_value = "xyxy")]
        box_format: must_ds::write::BoxFormat,
        /// For a top-k task given all C probabilities: how many to keep.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// MiB of labels held for shards not complete yet before the
        /// largest is spilled to a temporary file.
        #[arg(long, default_value_t = 1024, value_name = "MIB")]
        memory: u64,
    },
    /// Summarize a dataset (tasks, shards, coverage) or one lone Parquet file;
    /// with --stats, read the labels and report what an auditor looks for.
    ///
    /// Examples:
    ///   must-ds inspect /data/corpus --json
    ///   must-ds inspect /data/corpus --stats --task det --shards 0..9 --sample 10000
    Inspect {
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
    },
    /// Check every data file: checksums, alignment of labels with shards,
    /// values in range, that every image decodes and every file exists.
    /// Prints one line per problem; exits with 1 when there is any.
    ///
    /// Example: must-ds validate /data/corpus --json
    Validate {
        /// Dataset root.
        root: String,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
        /// Do not decode images (checksums and labels only).
        #[arg(long)]
        no_decode: bool,
        /// Image shards checked at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
    /// Draw a sample with its labels (boxes with class names, segmentation
    /// with a legend, depth in a colormap, side by side), or a contact sheet.
    ///
    /// Examples:
    ///   must-ds render /data/corpus --image-id jft/000123.jpg --out sample.png
    ///   must-ds render /data/corpus --grid 8 --out sheet.png
    Render {
        /// Dataset root.
        root: String,
        /// The image to draw.
        #[arg(long, conflicts_with_all = ["index", "grid"])]
        image_id: Option<String>,
        /// The image at this row of the dataset (shards in id order).
        #[arg(long, conflicts_with = "grid")]
        index: Option<u64>,
        /// A contact sheet of this many random samples.
        #[arg(long)]
        grid: Option<usize>,
        /// Output PNG file.
        #[arg(long)]
        out: PathBuf,
        /// Only this task (repeat for more).
        #[arg(long = "task")]
        tasks: Vec<String>,
        /// Panel height in pixels.
        #[arg(long, default_value_t = 320)]
        height: u32,
        /// Do not draw boxes scored below this.
        #[arg(long, default_value_t = 0.0)]
        min_score: f32,
        /// Seed of the grid's samples.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Show the commit history.
    ///
    /// Example: must-ds log /data/corpus
    Log {
        /// Dataset root.
        root: String,
        /// Print JSON lines (one commit per line).
        #[arg(long)]
        json: bool,
    },
    /// Delete data files that no commit references (left by crashed or
    /// losing writers) once they are older than a grace period.
    ///
    /// Example: must-ds vacuum /data/corpus --older-than 7d --dry-run
    Vacuum {
        /// Dataset root.
        root: String,
        /// Grace period: only orphans older than this go (30m, 12h, 7d...).
        /// Keep it longer than any write takes, or an upload in flight may go.
        #[arg(long, default_value = "7d")]
        older_than: String,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
    },
    /// Run a TorchScript teacher over the image shards that have no labels
    /// for the task yet; one aligned label file committed per shard.
    /// Preprocessing and post-processing follow the task's teacher params.
    ///
    /// Example: must-ds label /data/corpus --task det --model det.pt --device cuda:0 --worker auto --steal
    #[cfg(feature = "tch")]
    Label {
        /// Dataset root.
        root: String,
        /// The task (define it with `must-ds task define ... --model FILE`).
        #[arg(long)]
        task: String,
        /// TorchScript file.
        #[arg(long)]
        model: PathBuf,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Only these image shards: K, A..B (inclusive).
        #[arg(long)]
        shards: Option<String>,
        /// This machine's share, I/N: shards whose id modulo N is I. `auto`
        /// reads I (and N where the scheduler gives it) from a job array:
        /// Slurm (SLURM_ARRAY_TASK_ID), a Kubernetes Indexed Job
        /// (JOB_COMPLETION_INDEX), Google Cloud Batch, AWS Batch, Grid
        /// Engine, PBS or LSF.
        #[arg(long)]
        worker: Option<String>,
        /// With --worker auto: the number of workers, where the scheduler
        /// does not give it (a Kubernetes Job's completions).
        #[arg(long)]
        of: Option<u64>,
        /// Once this worker's share is done, label shards of other shares
        /// that no one has labeled yet. Two workers may then label one
        /// shard; the later commit is refused and its work dropped (at most
        /// one shard per meeting).
        #[arg(long, requires = "worker")]
        steal: bool,
        /// Images per model call.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Decode threads (default: the cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// Measure the loader: samples/s, where the time goes, peak memory, and
    /// decoding the same images alone for comparison.
    ///
    /// Example: must-ds bench must-demo --batch-size 32 --size 384 --workers 2
    Bench {
        /// Dataset root.
        root: String,
        /// Tasks to load (repeat; default all).
        #[arg(long = "task")]
        tasks: Vec<String>,
        /// Samples per batch.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Output side in pixels (square).
        #[arg(long, default_value_t = 384)]
        size: u32,
        /// Decode threads (default: the cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Epochs to run.
        #[arg(long, default_value_t = 1)]
        epochs: u64,
        /// Images as normalized f32 instead of u8.
        #[arg(long)]
        f32: bool,
        /// Augmentation off (whole image resized).
        #[arg(long)]
        no_augment: bool,
        /// Only decode the images, no loader.
        #[arg(long)]
        decode_only: bool,
        /// Dense labels at 1/N of the output size (1, 2, 4 or 8).
        #[arg(long, default_value_t = 1)]
        label_stride: u32,
        /// Segmentation pixels under this confidence become ignore_index
        /// (reads the confidence column when above 0).
        #[arg(long, default_value_t = 0.0)]
        min_confidence: f32,
        /// Also run each task alone and report it against its floor.
        #[arg(long)]
        per_task: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build a demo dataset from bundled photos with demonstration teachers.
    ///
    /// Example: must-ds demo ./must-demo
    Demo {
        /// Where to build it (a previous demo dataset there is replaced).
        #[arg(default_value = "must-demo")]
        dir: PathBuf,
        /// Images to make (crops and flips of the 7 bundled photos; default 336).
        #[arg(long, default_value_t = 336)]
        images: usize,
        /// Segmentation masks (with confidence) and depth maps at the image's
        /// full resolution, as teachers that upsample their logits write
        /// them (default: masks at 1/4 and depth at 1/8 of the image).
        #[arg(long)]
        full_res_maps: bool,
        /// Compression of the mask, confidence and depth columns: zstd, lz4 or none.
        #[arg(long, default_value = "lz4")]
        blob_codec: must_ds::write::BlobCodec,
    },
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
    match run(cli, &rt) {
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
fn run(cli: Cli, rt: &tokio::runtime::Runtime) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Init {
            root,
            name,
            description,
        } => {
            let name = name.unwrap_or_else(|| {
                root.trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or("dataset")
                    .to_owned()
            });
            let ds = rt.block_on(Dataset::init(&root, DatasetInfo { name, description }))?;
            writeln!(out, "created dataset {} at version 0", ds.url())?;
        }
        Command::Task { command } => task::run(command, rt, &mut out)?,
        Command::Ingest {
            root,
            from,
            source,
            workers,
            strict,
            skip_existing,
            shard_mb,
            row_group_mb,
            row_group_rows,
            shard_rows,
        } => {
            let ds = rt.block_on(Dataset::open(&root))?;
            let collected = collect_inputs(&from, &source)?;
            if strict {
                if let Some(s) = collected.skipped.first() {
                    bail!("{}: {} (--strict: nothing was ingested)", s.file, s.reason);
                }
            }
            let inputs = collected.images;
            if inputs.is_empty() {
                bail!("{}: no files to ingest", from.display());
            }
            let mut opts = IngestOptions::new(source);
            if let Some(w) = workers {
                opts.workers = w.max(1);
            }
            opts.strict = strict;
            opts.skip_existing = skip_existing;
            opts.shard.shard_bytes = shard_mb.max(1) << 20;
            opts.shard.row_group_bytes = row_group_mb.max(1) << 20;
            opts.shard.row_group_rows = row_group_rows.max(1);
            opts.shard.shard_rows = shard_rows.max(1);
            let bar = indicatif::ProgressBar::new(inputs.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} images, {msg} [{elapsed_precise}, eta {eta}]",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let b = bar.clone();
            let progress: must_ds::ingest::Progress = std::sync::Arc::new(move |n, bytes| {
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
        }
        Command::AddLabels {
            root,
            task,
            shard,
            paths,
            replace,
            skip_labeled,
            map,
            box_format,
            top_k,
            memory,
        } => add_labels::run(
            add_labels::AddLabelsArgs {
                root,
                task,
                shard,
                paths,
                replace,
                skip_labeled,
                map,
                box_format,
                top_k,
                memory_mib: memory,
            },
            rt,
            &mut out,
        )?,
        Command::Inspect {
            target,
            version,
            json,
            stats,
            tasks,
            shards,
            sample,
            seed,
        } => {
            let lone = target.ends_with(".parquet") && std::path::Path::new(&target).is_file();
            if stats && lone {
                let bytes = std::fs::read(&target).with_context(|| format!("reading {target}"))?;
                let st = must_ds::audit::label_file_stats(bytes.into(), &target)?;
                if json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&st)?)?;
                } else {
                    audit::print_stats(&st, &mut out)?;
                }
            } else if stats {
                let ds = match version {
                    Some(v) => rt.block_on(Dataset::open_at(&target, v))?,
                    None => rt.block_on(Dataset::open(&target))?,
                };
                let opts = must_ds::audit::StatsOptions {
                    tasks: (!tasks.is_empty()).then_some(tasks),
                    shards: shards.as_deref().map(audit::parse_range).transpose()?,
                    sample,
                    seed,
                    parallel: 4,
                };
                audit::stats(&ds, opts, json, rt, &mut out)?;
            } else {
                inspect::run(&target, version, json, rt, &mut out)?;
            }
        }
        Command::Validate {
            root,
            json,
            no_decode,
            parallel,
        } => {
            if !audit::validate(&root, json, !no_decode, parallel, rt, &mut out)? {
                out.flush()?;
                return Ok(1);
            }
        }
        Command::Render {
            root,
            image_id,
            index,
            grid,
            out: file,
            tasks,
            height,
            min_score,
            seed,
        } => {
            let ds = rt.block_on(Dataset::open(&root))?;
            let opts = must_ds::audit::RenderOptions {
                tasks: (!tasks.is_empty()).then_some(tasks),
                panel_height: height,
                min_score,
            };
            let rendered = match grid {
                Some(n) => rt.block_on(must_ds::audit::render_grid(&ds, n, seed, &opts))?,
                None => rt.block_on(must_ds::audit::render_sample(
                    &ds,
                    image_id.as_deref(),
                    index,
                    &opts,
                ))?,
            };
            rendered
                .image
                .save(&file)
                .with_context(|| format!("writing {}", file.display()))?;
            writeln!(
                out,
                "wrote {} ({}x{})",
                file.display(),
                rendered.image.width(),
                rendered.image.height()
            )?;
            for p in &rendered.problems {
                eprintln!("warning: not drawn: {p}");
            }
        }
        Command::Log { root, json } => {
            let ds = rt.block_on(Dataset::open(&root))?;
            inspect::print_log(&rt.block_on(ds.history())?, json, &mut out)?;
        }
        Command::Vacuum {
            root,
            older_than,
            dry_run,
            json,
        } => {
            let grace = must_ds::store::vacuum::parse_duration(&older_than).with_context(|| {
                format!("--older-than {older_than:?}: use 30s, 15m, 2h, 7d or 1w")
            })?;
            let mut ds = rt.block_on(Dataset::open(&root))?;
            let r = rt.block_on(ds.vacuum(grace, dry_run))?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                let verb = if dry_run { "would delete" } else { "deleted" };
                for f in &r.deleted {
                    writeln!(out, "{verb} {f}")?;
                }
                writeln!(
                    out,
                    "{verb} {} orphaned file(s), {:.1} MiB; kept {} referenced and {} orphan(s) younger than {older_than}",
                    r.deleted.len(),
                    r.bytes as f64 / 1048576.0,
                    r.referenced,
                    r.too_young.len()
                )?;
            }
        }
        #[cfg(feature = "tch")]
        Command::Label {
            root,
            task,
            model,
            device,
            shards,
            worker,
            of,
            steal,
            batch,
            threads,
            json,
        } => {
            let device = match device.as_str() {
                "cpu" => tch::Device::Cpu,
                "cuda" => tch::Device::Cuda(0),
                d => match d.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
                    Some(n) => tch::Device::Cuda(n),
                    None => anyhow::bail!("--device {d:?}: use cpu, cuda or cuda:N"),
                },
            };
            if of.is_some() && worker.is_none() {
                anyhow::bail!("--of goes with --worker auto");
            }
            let worker = worker
                .map(|w| must_ds::teacher::share::parse_worker(&w, of, &|k| std::env::var(k).ok()))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let shards = shards
                .map(|s| audit::parse_range(&s).map(|(a, b)| a..b + 1))
                .transpose()?;
            let job = must_ds::teacher::LabelJob {
                task,
                model,
                device,
                batch,
                workers: threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                shards,
                worker,
                steal,
            };
            let mut ds = rt.block_on(Dataset::open(&root))?;
            let bar = audit::bar(0, "images ({per_sec})");
            let report =
                must_ds::teacher::label(rt.handle(), &mut ds, &job, (!json).then_some(&bar))?;
            bar.finish_and_clear();
            if json {
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            } else {
                writeln!(
                    out,
                    "labeled {} images in {} shards ({:.0} images/s; model calls {:.1} s, waiting for input {:.1} s); {} shards already labeled; model {}",
                    report.images,
                    report.labeled.len(),
                    report.images as f64 / report.seconds.max(1e-9),
                    report.model_s,
                    report.input_wait_s,
                    report.skipped.len(),
                    report.checkpoint
                )?;
                if let Some(w) = &report.worker {
                    writeln!(
                        out,
                        "worker {} of {} (from {}); {} shards stolen from other shares, {} lost to another worker's commit",
                        w.index,
                        w.count,
                        w.source,
                        report.stolen.len(),
                        report.lost.len()
                    )?;
                }
            }
        }
        Command::Bench {
            root,
            tasks,
            batch_size,
            size,
            workers,
            epochs,
            f32,
            no_augment,
            decode_only,
            label_stride,
            min_confidence,
            per_task,
            json,
        } => bench::run(
            bench::BenchArgs {
                root,
                tasks,
                batch_size,
                size,
                workers: workers
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                epochs,
                f32,
                no_augment,
                decode_only,
                label_stride,
                min_confidence,
                per_task,
                json,
            },
            rt,
            &mut out,
        )?,
        Command::Demo {
            dir,
            images,
            full_res_maps,
            blob_codec,
        } => demo::run(&dir, images, full_res_maps, blob_codec, rt, &mut out)?,
    }
    Ok(0)
}
