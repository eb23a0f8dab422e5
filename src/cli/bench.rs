//! `must-ds bench`: loader throughput and where the time goes, next to
//! decoding the same JPEGs alone with the same decoder on the same cores.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use must_ds::loader::{ImageOutput, LabelOptions, LoaderBuilder, MetricsSnapshot};
use must_ds::Dataset;

/// What to measure.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct BenchArgs {
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
}

/// Peak resident memory of this process, in bytes (Linux), else 0.
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Decodes every embedded image of the dataset with `workers` threads;
/// returns (images, seconds). The encoded bytes are read first, untimed.
fn decode_alone(
    ds: &Dataset,
    rt: &tokio::runtime::Runtime,
    workers: usize,
) -> anyhow::Result<(usize, f64)> {
    let mut images = Vec::new();
    for (&shard, a) in &ds.snapshot().images {
        for g in 0..a.row_groups.len() {
            let rg = rt.block_on(ds.read_row_group(shard, g, &[], Some(&["image"])))?;
            images.extend(rg.images.into_iter().filter_map(|i| i.image));
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut rgb = must_ds::codec::Rgb::default();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(b) = images.get(i) else { break };
                    let _ =
                        must_ds::codec::decode_rgb(b, &mut rgb, must_ds::codec::max_image_pixels());
                }
            });
        }
    });
    Ok((images.len(), t0.elapsed().as_secs_f64()))
}

pub(crate) fn run(
    a: BenchArgs,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let workers = a.workers.unwrap_or_else(super::cores);
    let ds = rt.block_on(Dataset::open(&a.root))?;
    if a.decode_only {
        let (n_dec, t_dec) = decode_alone(&ds, rt, workers)?;
        let decode_rate = n_dec as f64 / t_dec;
        if a.json {
            writeln!(
                out,
                "{}",
                json!({"decode_images": n_dec, "decode_s": t_dec, "decode_images_per_s": decode_rate})
            )?;
        } else {
            writeln!(out, "decode alone: {n_dec} images in {t_dec:.2} s = {decode_rate:.0} images/s ({} threads)", workers)?;
        }
        return Ok(());
    }
    let tasks: Vec<String> = if a.tasks.is_empty() {
        ds.snapshot().tasks.keys().cloned().collect()
    } else {
        a.tasks.clone()
    };
    let (samples, secs, m) = epochs(&ds, &a, &tasks, workers)?;
    // Peak memory of the loader, before the comparisons hold data in memory.
    let rss = peak_rss();
    let opts = label_options(&a);
    let refs: Vec<&str> = tasks.iter().map(String::as_str).collect();
    let (read_rows, read_s) = must_ds::loader::read_alone(&ds, &refs, &opts, workers)?;
    let (n_dec, t_dec) = decode_alone(&ds, rt, workers)?;
    let decode_rate = n_dec as f64 / t_dec;
    let read_rate = read_rows as f64 / read_s;
    let rate = samples as f64 / secs;
    let overhead = decode_rate / rate - 1.0;
    // The floor: decoding the images plus reading the labels, one after the other.
    let floor_rate = 1.0 / (1.0 / decode_rate + 1.0 / read_rate);
    let over_floor = floor_rate / rate - 1.0;
    let mut per_task = vec![];
    if a.per_task {
        for t in &tasks {
            let one = vec![t.clone()];
            let single = BenchArgs {
                epochs: 1,
                ..a.clone()
            };
            let (n, s, _) = epochs(&ds, &single, &one, workers)?;
            let (rr, rs) = must_ds::loader::read_alone(&ds, &[t.as_str()], &opts, workers)?;
            let r = n as f64 / s;
            let floor = 1.0 / (1.0 / decode_rate + s_per(rr, rs));
            per_task.push(json!({
                "task": t, "samples_per_s": r, "read_rows_per_s": rr as f64 / rs,
                "floor_samples_per_s": floor, "overhead_vs_floor": floor / r - 1.0,
            }));
        }
    }
    if a.json {
        writeln!(
            out,
            "{}",
            json!({
                "samples": samples, "seconds": secs, "samples_per_s": rate,
                "decode_images_per_s": decode_rate,
                "read_rows_per_s": read_rate,
                "floor_samples_per_s": floor_rate,
                "overhead_vs_decode": overhead,
                "overhead_vs_floor": over_floor,
                "peak_rss_bytes": rss,
                "batch_size": a.batch_size, "size": a.size, "workers": workers, "tasks": tasks,
                "label_stride": a.label_stride,
                "last_epoch": m,
                "per_task": per_task,
            })
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{} epoch(s), {samples} samples, batch {}, {}×{}, label stride {}, tasks {}, {} workers",
        a.epochs,
        a.batch_size,
        a.size,
        a.size,
        a.label_stride,
        tasks.join(","),
        workers
    )?;
    writeln!(out, "loader:        {rate:.0} samples/s ({secs:.2} s)")?;
    writeln!(
        out,
        "decode alone:  {decode_rate:.0} images/s (same decoder, same threads)"
    )?;
    writeln!(
        out,
        "read alone:    {read_rate:.0} rows/s (fetch, decompress, parse and check the columns the epoch reads, same threads)"
    )?;
    writeln!(
        out,
        "floor:         {floor_rate:.0} samples/s (decode + read); the loader costs {:+.1} % over it, {:+.1} % over decoding alone",
        over_floor * 100.0,
        overhead * 100.0
    )?;
    writeln!(
        out,
        "peak RSS:      {:.0} MiB (the loader's epochs)",
        rss as f64 / 1048576.0
    )?;
    writeln!(out, "last epoch, thread-seconds: fetch {:.2} (in flight), read {:.2}, decode {:.2}, augment {:.2}, collate {:.2}; caller waited {:.2} s",
        m.fetch_s, m.read_s, m.decode_s, m.augment_s, m.collate_s, m.wait_s)?;
    for p in &per_task {
        writeln!(
            out,
            "task {:<20} {:>6.0} samples/s, floor {:>6.0}, {:+.1} % over it",
            p["task"].as_str().unwrap_or_default(),
            p["samples_per_s"].as_f64().unwrap_or(0.0),
            p["floor_samples_per_s"].as_f64().unwrap_or(0.0),
            p["overhead_vs_floor"].as_f64().unwrap_or(0.0) * 100.0
        )?;
    }
    Ok(())
}

fn s_per(rows: u64, secs: f64) -> f64 {
    secs / rows.max(1) as f64
}

fn label_options(a: &BenchArgs) -> LabelOptions {
    LabelOptions {
        min_confidence: a.min_confidence,
        ..LabelOptions::default()
    }
}

/// Runs `a.epochs` epochs of the loader over `tasks` with `workers` threads: (samples, seconds, the
/// last epoch's metrics).
fn epochs(
    ds: &Dataset,
    a: &BenchArgs,
    tasks: &[String],
    workers: usize,
) -> anyhow::Result<(u64, f64, MetricsSnapshot)> {
    let mut b = LoaderBuilder::new(ds.clone())
        .batch_size(a.batch_size)
        .output_size(a.size, a.size)
        .label_stride(a.label_stride)
        .min_confidence(a.min_confidence)
        .workers(workers)
        .augment(!a.no_augment);
    if a.f32 {
        b = b.image_output(ImageOutput::IMAGENET);
    }
    for t in tasks {
        b = b.task(t, false);
    }
    let t0 = Instant::now();
    let mut loader = b.epochs(0..a.epochs).context("starting the loader")?;
    let mut samples = 0u64;
    while let Some(batch) = loader.next() {
        let batch = batch?;
        samples += batch.real() as u64;
        loader.recycle(batch);
    }
    Ok((samples, t0.elapsed().as_secs_f64(), loader.metrics()))
}
