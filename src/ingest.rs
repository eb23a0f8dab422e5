//! Ingest: many files in, image shards out, on parallel workers. Each
//! worker fills its own shard and commits it when full, so workers (and
//! machines) need no coordination beyond the commit log.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::sniff_image;
use crate::error::{Error, Result};
use crate::format::AddImages;
use crate::store::Dataset;
use crate::write::{ImageShardOptions, ImageShardWriter};

/// Where an input image's bytes come from.
#[derive(Debug, Clone)]
pub enum InputData {
    /// A local file.
    File(PathBuf),
    /// Bytes already in memory.
    Bytes(Bytes),
}

/// One image to ingest.
#[derive(Debug, Clone)]
pub struct InputImage {
    /// Its id in the dataset.
    pub image_id: String,
    /// Its bytes.
    pub data: InputData,
}

impl InputImage {
    fn name(&self) -> String {
        match &self.data {
            InputData::File(p) => p.display().to_string(),
            InputData::Bytes(_) => self.image_id.clone(),
        }
    }

    fn read(&self) -> std::result::Result<Bytes, String> {
        match &self.data {
            InputData::File(p) => std::fs::read(p).map(Bytes::from).map_err(|e| e.to_string()),
            InputData::Bytes(b) => Ok(b.clone()),
        }
    }
}

/// Lists the inputs of `from`: every file under a folder (sorted; ids are
/// `source/relative/path`), or a text file with one path per line (relative
/// to the list's folder; blank lines and `#` comments skipped).
pub fn collect_inputs(from: &Path, source: &str) -> Result<Vec<InputImage>> {
    let meta = std::fs::metadata(from).map_err(|e| Error::io(from.display().to_string(), e))?;
    let mut out = Vec::new();
    if meta.is_dir() {
        for entry in walkdir::WalkDir::new(from).sort_by_file_name() {
            let entry = entry.map_err(|e| Error::io(from.display().to_string(), e.into()))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(from).unwrap_or(entry.path());
            let rel = rel.to_string_lossy().replace('\\', "/");
            if rel.split('/').any(|part| part.starts_with('.')) {
                continue;
            }
            out.push(InputImage {
                image_id: format!("{source}/{rel}"),
                data: InputData::File(entry.path().to_owned()),
            });
        }
    } else {
        let text =
            std::fs::read_to_string(from).map_err(|e| Error::io(from.display().to_string(), e))?;
        let base = from.parent().unwrap_or(Path::new("."));
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let p = Path::new(line);
            let path = if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            };
            out.push(InputImage {
                image_id: format!(
                    "{source}/{}",
                    line.trim_start_matches("./").trim_start_matches('/')
                ),
                data: InputData::File(path),
            });
        }
    }
    Ok(out)
}

/// How to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The `source` of every row.
    pub source: String,
    /// Parallel workers (default: the number of cores).
    pub workers: usize,
    /// Fail on the first unreadable input, before anything is committed.
    pub strict: bool,
    /// Skip inputs whose image id the dataset already has (from a shard of
    /// the same source), so that a rerun after a crash finishes the job.
    pub skip_existing: bool,
    /// Shard and row group limits.
    pub shard: ImageShardOptions,
}

impl IngestOptions {
    /// Defaults for `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            strict: false,
            skip_existing: false,
            shard: ImageShardOptions::default(),
        }
    }
}

/// An input that was not ingested, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The file (or image id).
    pub file: String,
    /// The reason.
    pub reason: String,
}

/// What an ingest did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IngestReport {
    /// The committed image shards.
    pub shards: Vec<AddImages>,
    /// Images written.
    pub images: u64,
    /// Encoded image bytes written.
    pub image_bytes: u64,
    /// Inputs skipped.
    pub skipped: Vec<Skipped>,
    /// Inputs already in the dataset (with `skip_existing`).
    pub already_present: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Progress callback: called with (inputs done, image bytes done).
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Ingests `inputs` into `ds` on `opts.workers` threads. Blocks; `handle`
/// runs the uploads and commits (call this from outside that runtime).
pub fn ingest(
    handle: &tokio::runtime::Handle,
    ds: &Dataset,
    inputs: Vec<InputImage>,
    opts: &IngestOptions,
    progress: Option<Progress>,
) -> Result<IngestReport> {
    let start = Instant::now();
    let mut inputs = inputs;
    let mut already = 0u64;
    if opts.skip_existing {
        let mut ds = ds.clone();
        handle.block_on(ds.refresh())?;
        let mut have = std::collections::HashSet::new();
        let shards: Vec<u64> = ds
            .snapshot()
            .images
            .iter()
            .filter(|(_, a)| a.sources.contains_key(&opts.source))
            .map(|(k, _)| *k)
            .collect();
        for s in shards {
            have.extend(handle.block_on(ds.read_image_ids(s))?);
        }
        let before = inputs.len();
        inputs.retain(|i| !have.contains(&i.image_id));
        already = (before - inputs.len()) as u64;
    }
    if opts.strict {
        for input in &inputs {
            let bytes = input.read().map_err(|reason| Error::NotAnImage {
                file: input.name(),
                reason,
            })?;
            sniff_image(&bytes).map_err(|reason| Error::NotAnImage {
                file: input.name(),
                reason,
            })?;
        }
    }
    let queue = Arc::new(Mutex::new(inputs.into_iter().collect::<VecDeque<_>>()));
    let report = Arc::new(Mutex::new(IngestReport::default()));
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers = opts.workers.max(1);
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (queue, report, done, done_bytes, progress) = (
                    queue.clone(),
                    report.clone(),
                    done.clone(),
                    done_bytes.clone(),
                    progress.clone(),
                );
                let mut ds = ds.clone();
                scope.spawn(move || -> Result<()> {
                    let mut writer = ImageShardWriter::new(opts.shard.clone())?;
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                        let Some(input) = next else { break };
                        let added = input.read().and_then(|bytes| {
                            writer
                                .add_image(&input.image_id, &opts.source, &bytes)
                                .map(|_| bytes.len())
                                .map_err(|e| match e {
                                    Error::NotAnImage { reason, .. } => reason,
                                    other => other.to_string(),
                                })
                        });
                        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        match added {
                            Ok(len) => {
                                let b = done_bytes
                                    .fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed)
                                    + len as u64;
                                if let Some(p) = &progress {
                                    p(n, b);
                                }
                            }
                            Err(reason) => {
                                if opts.strict {
                                    return Err(Error::NotAnImage {
                                        file: input.name(),
                                        reason,
                                    });
                                }
                                report
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .skipped
                                    .push(Skipped {
                                        file: input.name(),
                                        reason,
                                    });
                                continue;
                            }
                        }
                        if writer.is_full() {
                            let full = std::mem::replace(
                                &mut writer,
                                ImageShardWriter::new(opts.shard.clone())?,
                            );
                            commit_shard(handle, &mut ds, full, &report)?;
                        }
                    }
                    if writer.rows() > 0 {
                        commit_shard(handle, &mut ds, writer, &report)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Conflict {
                        version: 0,
                        reason: "an ingest worker panicked".into(),
                    })
                })
            })
            .collect()
    });
    for r in results {
        r?;
    }
    let mut report = Arc::try_unwrap(report)
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .unwrap_or_default();
    report.shards.sort_by_key(|a| a.shard);
    report.skipped.sort_by(|a, b| a.file.cmp(&b.file));
    report.already_present = already;
    report.seconds = start
        .elapsed()
        .as_secs_f64()
        .max(Duration::from_micros(1).as_secs_f64());
    Ok(report)
}

fn commit_shard(
    handle: &tokio::runtime::Handle,
    ds: &mut Dataset,
    writer: ImageShardWriter,
    report: &Mutex<IngestReport>,
) -> Result<()> {
    let image_bytes = writer.image_bytes() as u64;
    let file = writer.finish()?;
    let rows = file.rows;
    let added = handle.block_on(ds.add_image_shard(file))?;
    let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
    r.images += rows;
    r.image_bytes += image_bytes;
    r.shards.push(added);
    Ok(())
}
