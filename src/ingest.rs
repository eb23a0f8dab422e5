//! Ingest: many files in, image shards out, on parallel workers. Each
//! worker fills its own shard and commits it when full, so workers (and
//! machines) need no coordination beyond the commit log.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use std::collections::HashSet;

use crate::codec::{max_image_pixels, sniff_image};
use crate::error::{Error, Result};
use crate::format::{Action, AddImages};
use crate::store::{layout, Dataset, DatasetOptions, Transaction};
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

/// The inputs found by [`collect_inputs`], and the entries it could not use.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The images to ingest, with their ids.
    pub images: Vec<InputImage>,
    /// Entries that cannot be ingested, and why: names that are not UTF-8
    /// (an id made from them would not be unique), broken symbolic links
    /// and link loops, duplicate ids in a list.
    pub skipped: Vec<Skipped>,
}

/// Lists the inputs of `from`: every file under a folder (sorted; ids are
/// `source/relative/path`; symbolic links are followed, and hidden files
/// and folders skipped), or a text file with one path per line (relative
/// to the list's folder; blank lines and `#` comments skipped). Image ids
/// are unique: a name that is not valid UTF-8 is reported in
/// [`Inputs::skipped`] rather than mapped to an id another name could
/// also get, and so is a second line naming the same id.
pub fn collect_inputs(from: &Path, source: &str) -> Result<Inputs> {
    let meta = std::fs::metadata(from).map_err(|e| Error::io(from.display().to_string(), e))?;
    let mut out = Inputs::default();
    let skip = |out: &mut Inputs, file: String, reason: &str| {
        out.skipped.push(Skipped {
            file,
            reason: reason.to_owned(),
        })
    };
    if meta.is_dir() {
        let walk = walkdir::WalkDir::new(from)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            // Hidden files and folders (not descended into).
            .filter_entry(|e| {
                e.depth() == 0 || !e.file_name().as_encoded_bytes().starts_with(b".")
            });
        for entry in walk {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let file = e
                        .path()
                        .map_or_else(|| from.display().to_string(), |p| p.display().to_string());
                    let reason = if e.loop_ancestor().is_some() {
                        "a symbolic link loop: not followed".to_owned()
                    } else if e.io_error().map(|i| i.kind()) == Some(std::io::ErrorKind::NotFound) {
                        "a broken symbolic link".to_owned()
                    } else {
                        format!("cannot be read: {e}")
                    };
                    skip(&mut out, file, &reason);
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(from).unwrap_or(entry.path());
            let Some(rel) = rel.to_str() else {
                skip(
                    &mut out,
                    entry.path().display().to_string(),
                    "its name is not valid UTF-8, so it has no unique image id: rename it",
                );
                continue;
            };
            let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
            out.images.push(InputImage {
                image_id: format!("{source}/{rel}"),
                data: InputData::File(entry.path().to_owned()),
            });
        }
    } else {
        let text =
            std::fs::read_to_string(from).map_err(|e| Error::io(from.display().to_string(), e))?;
        let base = from.parent().unwrap_or(Path::new("."));
        let mut seen = std::collections::HashSet::new();
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
            let image_id = format!(
                "{source}/{}",
                line.trim_start_matches("./").trim_start_matches('/')
            );
            if !seen.insert(image_id.clone()) {
                skip(
                    &mut out,
                    path.display().to_string(),
                    &format!("listed again: image id {image_id:?} is taken by an earlier line"),
                );
                continue;
            }
            out.images.push(InputImage {
                image_id,
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
    let existing = if opts.skip_existing {
        let mut ds = ds.clone();
        handle.block_on(ds.refresh())?;
        let mut ex = Existing::default();
        ex.catch_up(handle, &ds, &opts.source)?;
        let before = inputs.len();
        inputs.retain(|i| !ex.have.contains(&i.image_id));
        already = (before - inputs.len()) as u64;
        Some(Mutex::new(ex))
    } else {
        None
    };
    if opts.strict {
        for input in &inputs {
            let bytes = input.read().map_err(|reason| Error::NotAnImage {
                file: input.name(),
                reason,
            })?;
            sniff_image(&bytes)
                .and_then(|(_, w, h)| crate::codec::check_pixels(w, h, max_image_pixels()))
                .map_err(|reason| Error::NotAnImage {
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
    let existing = existing.as_ref();
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
                    let mut pending: Vec<InputImage> = vec![];
                    let mut shard = Shard {
                        handle,
                        opts,
                        existing,
                        queue: &queue,
                        report: &report,
                    };
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                        let Some(input) = next else {
                            if writer.rows() == 0 {
                                break;
                            }
                            // The last shard; a clash may put inputs back.
                            let last = std::mem::replace(
                                &mut writer,
                                ImageShardWriter::new(opts.shard.clone())?,
                            );
                            shard.commit(&mut ds, last, std::mem::take(&mut pending))?;
                            continue;
                        };
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
                                pending.push(input);
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
                            shard.commit(&mut ds, full, std::mem::take(&mut pending))?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Internal("an ingest worker panicked".into())))
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

/// With `skip_existing`: the image ids the dataset has for the source, and
/// the shards they were read from.
#[derive(Default)]
struct Existing {
    have: HashSet<String>,
    read: HashSet<u64>,
}

impl Existing {
    /// Reads the ids of the source's shards in `ds` not read yet.
    fn catch_up(
        &mut self,
        handle: &tokio::runtime::Handle,
        ds: &Dataset,
        source: &str,
    ) -> Result<()> {
        let new: Vec<u64> = ds
            .snapshot()
            .images
            .iter()
            .filter(|(k, a)| a.sources.contains_key(source) && !self.read.contains(k))
            .map(|(k, _)| *k)
            .collect();
        for s in new {
            self.have.extend(handle.block_on(ds.read_image_ids(s))?);
            self.read.insert(s);
        }
        Ok(())
    }
}

/// What a worker needs to commit a shard.
struct Shard<'a> {
    handle: &'a tokio::runtime::Handle,
    opts: &'a IngestOptions,
    existing: Option<&'a Mutex<Existing>>,
    queue: &'a Mutex<VecDeque<InputImage>>,
    report: &'a Mutex<IngestReport>,
}

impl Shard<'_> {
    /// Uploads and commits a full shard made of `inputs`.
    ///
    /// With `skip_existing`, ids stay unique even against another ingest
    /// of the same files running at once: the shard is committed only at a
    /// version whose shards of the source were all checked for its ids
    /// (one attempt at a time; a lost race checks the new shards again).
    /// When some of its ids were committed meanwhile, the shard is not
    /// committed (its file is left to `vacuum`), the clashing inputs count
    /// as already present, and the others go back to the queue.
    fn commit(
        &mut self,
        ds: &mut Dataset,
        writer: ImageShardWriter,
        inputs: Vec<InputImage>,
    ) -> Result<()> {
        let handle = self.handle;
        let image_bytes = writer.image_bytes() as u64;
        let file = writer.finish()?;
        let rows = file.rows;
        let Some(existing) = self.existing else {
            let added = handle.block_on(ds.add_image_shard(file))?;
            let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
            r.images += rows;
            r.image_bytes += image_bytes;
            r.shards.push(added);
            return Ok(());
        };
        let path = layout::new_image_file();
        let action = file.add_images(&path);
        handle.block_on(ds.put_data_file(&path, file.bytes))?;
        let mut once = ds.clone();
        once.options.max_commit_attempts = 1;
        let attempts = DatasetOptions::default().max_commit_attempts;
        for _ in 0..attempts {
            handle.block_on(once.refresh())?;
            let clash: HashSet<String> = {
                let mut ex = existing.lock().unwrap_or_else(|e| e.into_inner());
                ex.catch_up(handle, &once, &self.opts.source)?;
                inputs
                    .iter()
                    .filter(|i| ex.have.contains(&i.image_id))
                    .map(|i| i.image_id.clone())
                    .collect()
            };
            if !clash.is_empty() {
                self.report
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .already_present += clash.len() as u64;
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                q.extend(inputs.into_iter().filter(|i| !clash.contains(&i.image_id)));
                return Ok(());
            }
            let txn = Transaction::new("ingest").with(Action::AddImages(action.clone()));
            match handle.block_on(once.commit(txn)) {
                Ok(c) => {
                    let added = c.actions.into_iter().find_map(|a| match a {
                        Action::AddImages(a) if a.path == path => Some(a),
                        _ => None,
                    });
                    let Some(added) = added else {
                        return Err(Error::InvalidCommit {
                            version: c.version,
                            reason: "the commit lost its own image shard".into(),
                        });
                    };
                    {
                        let mut shared = existing.lock().unwrap_or_else(|e| e.into_inner());
                        shared.read.insert(added.shard);
                        shared
                            .have
                            .extend(inputs.iter().map(|i| i.image_id.clone()));
                    }
                    *ds = once;
                    ds.options.max_commit_attempts = DatasetOptions::default().max_commit_attempts;
                    let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
                    r.images += rows;
                    r.image_bytes += image_bytes;
                    r.shards.push(added);
                    return Ok(());
                }
                // Lost a race: check the shards that came in.
                Err(Error::CommitRetriesExhausted { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::CommitRetriesExhausted {
            attempts,
            version: once.version() + 1,
        })
    }
}
