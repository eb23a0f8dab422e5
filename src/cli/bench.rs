//! `must-ds bench`: loader throughput and where the time goes, next to
//! decoding the same JPEGs alone with the same decoder on the same cores.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use crate::loader::{augment, ImageOutput, LoaderBuilder};
use crate::Dataset;

/// What to measure.
pub(crate) struct BenchArgs {
    pub root: String,
    pub tasks: Vec<String>,
    pub batch_size: usize,
    pub size: u32,
    pub workers: usize,
    pub epochs: u64,
    pub f32: bool,
    pub no_augment: bool,
    pub decode_only: bool,
    pub json: bool,
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
                let mut rgb = augment::Rgb::default();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(b) = images.get(i) else { break };
                    let _ = augment::decode(b, &mut rgb);
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
    let ds = rt.block_on(Dataset::open(&a.root))?;
    if a.decode_only {
        let (n_dec, t_dec) = decode_alone(&ds, rt, a.workers)?;
        let decode_rate = n_dec as f64 / t_dec;
        if a.json {
            writeln!(
                out,
                "{}",
                json!({"decode_images": n_dec, "decode_s": t_dec, "decode_images_per_s": decode_rate})
            )?;
        } else {
            writeln!(out, "decode alone: {n_dec} images in {t_dec:.2} s = {decode_rate:.0} images/s ({} threads)", a.workers)?;
        }
        return Ok(());
    }
    let tasks: Vec<String> = if a.tasks.is_empty() {
        ds.snapshot().tasks.keys().cloned().collect()
    } else {
        a.tasks.clone()
    };
    let mut epochs = vec![];
    let mut last = None;
    for epoch in 0..a.epochs {
        let mut b = LoaderBuilder::new(ds.clone())
            .batch_size(a.batch_size)
            .output_size(a.size, a.size)
            .workers(a.workers)
            .augment(!a.no_augment)
            .epoch(epoch);
        if a.f32 {
            b = b.image_output(ImageOutput::IMAGENET);
        }
        for t in &tasks {
            b = b.task(t, false);
        }
        let t0 = Instant::now();
        let mut loader = b.build().context("starting the loader")?;
        let mut samples = 0u64;
        while let Some(batch) = loader.next() {
            let batch = batch?;
            samples += batch.real() as u64;
            loader.recycle(batch);
        }
        let secs = t0.elapsed().as_secs_f64();
        epochs.push((samples, secs));
        last = Some(loader.metrics());
    }
    // Peak memory of the loader, before the comparison holds every image in memory.
    let rss = peak_rss();
    let (n_dec, t_dec) = decode_alone(&ds, rt, a.workers)?;
    let decode_rate = n_dec as f64 / t_dec;
    let m = last.unwrap_or_default();
    let (samples, secs) = epochs
        .iter()
        .fold((0, 0.0), |acc, e| (acc.0 + e.0, acc.1 + e.1));
    let rate = samples as f64 / secs;
    let overhead = decode_rate / rate - 1.0;
    if a.json {
        writeln!(
            out,
            "{}",
            json!({
                "samples": samples, "seconds": secs, "samples_per_s": rate,
                "decode_images_per_s": decode_rate,
                "overhead_vs_decode": overhead,
                "peak_rss_bytes": rss,
                "batch_size": a.batch_size, "size": a.size, "workers": a.workers, "tasks": tasks,
                "last_epoch": m,
            })
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{} epoch(s), {samples} samples, batch {}, {}×{}, tasks {}, {} workers",
        a.epochs,
        a.batch_size,
        a.size,
        a.size,
        tasks.join(","),
        a.workers
    )?;
    writeln!(out, "loader:        {rate:.0} samples/s ({secs:.2} s)")?;
    writeln!(
        out,
        "decode alone:  {decode_rate:.0} images/s (same decoder, same threads)"
    )?;
    writeln!(
        out,
        "pipeline cost: {:+.1} % over decoding alone",
        overhead * 100.0
    )?;
    writeln!(
        out,
        "peak RSS:      {:.0} MiB (the loader's epochs)",
        rss as f64 / 1048576.0
    )?;
    writeln!(out, "last epoch, thread-seconds: fetch {:.2} (in flight), decode {:.2}, augment {:.2}, collate {:.2}; caller waited {:.2} s",
        m.fetch_s, m.decode_s, m.augment_s, m.collate_s, m.wait_s)?;
    Ok(())
}
