//! `must-ds label`: run a TorchScript teacher over the image shards that have
//! no labels for the task yet (feature `tch`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;

use must_ds::store::Dataset;
use must_ds::teacher::{self, share::parse_worker, LabelJob};

#[derive(clap::Args, Debug)]
pub(crate) struct LabelArgs {
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
}

/// `cpu`, `cuda` or `cuda:N`.
fn parse_device(d: &str) -> anyhow::Result<tch::Device> {
    Ok(match d {
        "cpu" => tch::Device::Cpu,
        "cuda" => tch::Device::Cuda(0),
        d => match d.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => tch::Device::Cuda(n),
            None => bail!("--device {d:?}: use cpu, cuda or cuda:N"),
        },
    })
}

pub(crate) fn run(
    a: LabelArgs,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let device = parse_device(&a.device)?;
    if a.of.is_some() && a.worker.is_none() {
        bail!("--of goes with --worker auto");
    }
    let worker = a
        .worker
        .map(|w| parse_worker(&w, a.of, &|k| std::env::var(k).ok()))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let shards = a
        .shards
        .map(|s| super::parse_range(&s).map(|(a, b)| a..b + 1))
        .transpose()?;
    let job = LabelJob {
        task: a.task,
        model: a.model,
        device,
        batch: a.batch,
        workers: a.threads.unwrap_or_else(super::cores),
        shards,
        worker,
        steal: a.steal,
    };
    let mut ds = rt.block_on(Dataset::open(&a.root))?;
    let bar = super::bar(0, "images ({per_sec})");
    let report = teacher::label(rt.handle(), &mut ds, &job, (!a.json).then_some(&bar))?;
    bar.finish_and_clear();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
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
    Ok(())
}
