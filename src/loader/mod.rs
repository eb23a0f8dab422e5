//! The streaming loader: deterministic, resumable mixed-task batches.
//!
//! ```text
//! plan (indices only) ─▶ fetch (tokio: row group g of the image shard and of
//! every task file together, footers cached, bytes bounded) ─▶ coordinator
//! (shuffle buffer, one job per batch) ─▶ worker threads (decode, augment,
//! collate) ─▶ Loader::next (batches in order)
//! ```
//!
//! Guarantees:
//!
//! * **Determinism.** The batches of (dataset version, seed, epoch, rank,
//!   world size, plan options) are the same whatever the number of workers,
//!   the prefetch settings or the store; each sample's augmentation is drawn
//!   from (seed, epoch, shard, row), not from scheduling.
//! * **Equal steps.** Every rank yields the same number of batches (see
//!   [`plan`] for the rule, by [`Balance`]).
//! * **Resumption.** [`Loader::state`] after any batch is the same small value
//!   on every rank; a loader built with [`LoaderBuilder::resume`] yields
//!   exactly the batches an uninterrupted run would have yielded next, and
//!   skipped samples are neither fetched beyond their row group nor decoded.
//!   Resumed with another world size, the new ranks share the samples that
//!   no rank had yielded: none repeated, none lost (only padding or the
//!   `Drop` remainder can differ from the uninterrupted run).
//!
//! # Example
//!
//! ```
//! use must_ds::loader::LoaderBuilder;
//! # let dir = tempfile::tempdir().unwrap();
//! # let root = dir.path().join("ds");
//! # must_ds::demo::build(&root, 14).unwrap();
//! // `root` holds a dataset with the four demo tasks.
//! let mut loader = LoaderBuilder::open(root.to_str().unwrap(), None)
//!     .task("scene-color", true)
//!     .task("bright-regions", false)
//!     .task("luma-bands", false)
//!     .task("vertical-depth", false)
//!     .batch_size(4)
//!     .output_size(64, 64)
//!     .seed(7)
//!     .build()?;
//! let batch = loader.next().unwrap()?;
//! assert_eq!(batch.image_ids.len(), 4);
//! let state = loader.state(); // save it with the model checkpoint
//! # let rest: Vec<_> = loader.map(|b| b.unwrap().image_ids).collect();
//! // Later: the rest of the epoch, exactly.
//! let resumed = LoaderBuilder::open(root.to_str().unwrap(), None)
//!     .task("scene-color", true)
//!     .task("bright-regions", false)
//!     .task("luma-bands", false)
//!     .task("vertical-depth", false)
//!     .batch_size(4)
//!     .output_size(64, 64)
//!     .seed(7)
//!     .resume(state)
//!     .build()?;
//! # assert_eq!(resumed.map(|b| b.unwrap().image_ids).collect::<Vec<_>>(), rest);
//! # Ok::<(), must_ds::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel as cb;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::TaskDef;
use crate::read::FooterCache;
use crate::store::Dataset;
use arrow_array::cast::AsArray;
use arrow_array::Array;

pub mod augment;
pub mod batch;
mod fetch;
pub mod plan;

pub use augment::Crop;
pub use batch::{Batch, Images, LabelOptions, Mask, MissingMass, TaskBatch, TaskData};
pub use plan::Segment;

use crate::codec::Rgb;
use crate::codec::{to_planar, Resizer};
use plan::{Mixing, PlanOptions, Rng, Unit};

/// How ranks are brought to the same number of batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Every rank stops at the smallest rank's last full batch.
    #[default]
    Drop,
    /// Every rank goes on to the largest rank's last batch, with padding slots.
    Pad,
}

/// What to do with data that cannot be used (an unreadable row group, an
/// image that does not decode, a label that breaks the format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CorruptPolicy {
    /// Stop with [`Error::Corrupt`] naming file, row group and image id.
    #[default]
    Fail,
    /// Leave the samples' slots as padding and report them in [`Loader::skipped`].
    Skip,
}

/// A sample or row group the `Skip` policy left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptReport {
    /// The data file.
    pub file: String,
    /// Row group.
    pub row_group: usize,
    /// The sample, when one sample was bad.
    pub image_id: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for CorruptReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, row group {}", self.file, self.row_group)?;
        if let Some(i) = &self.image_id {
            write!(f, " (image_id {i:?})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl From<CorruptReport> for Error {
    fn from(r: CorruptReport) -> Self {
        Error::Corrupt {
            file: r.file,
            row_group: r.row_group,
            image_id: r.image_id,
            reason: r.reason,
        }
    }
}

/// Pixel type of [`Batch::images`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ImageOutput {
    /// u8, 0..=255.
    U8,
    /// f32, `(x / 255 − mean) / std` per channel.
    F32 {
        /// Per-channel mean (RGB).
        mean: [f32; 3],
        /// Per-channel standard deviation (RGB).
        std: [f32; 3],
    },
}

impl ImageOutput {
    /// f32 with the ImageNet mean and standard deviation.
    pub const IMAGENET: ImageOutput = ImageOutput::F32 {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
}

/// Where the loader stands in an epoch: the same on every rank. Save it with
/// the model; hand it to [`LoaderBuilder::resume`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoaderState {
    /// Dataset version planned.
    pub version: u64,
    /// Seed.
    pub seed: u64,
    /// Epoch.
    pub epoch: u64,
    /// Options that shape the plan (tasks required, batch size, shuffle, balance, weights).
    pub plan: String,
    /// World sizes used so far in this epoch and the batches each rank yielded under each.
    pub segments: Vec<Segment>,
}

/// Time and volume counters, summed over threads.
#[derive(Debug, Default)]
pub struct Metrics {
    fetch_ns: AtomicU64,
    fetched_bytes: AtomicU64,
    read_ns: AtomicU64,
    decode_ns: AtomicU64,
    decoded: AtomicU64,
    augment_ns: AtomicU64,
    collate_ns: AtomicU64,
    wait_ns: AtomicU64,
    samples: AtomicU64,
    batches: AtomicU64,
    padding: AtomicU64,
    missing_required: AtomicU64,
}

/// A reading of [`Metrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    /// Seconds row group reads were in flight (summed over concurrent reads).
    pub fetch_s: f64,
    /// Bytes fetched (compressed column chunks of every file).
    pub fetched_bytes: u64,
    /// Seconds decompressing, parsing and checking label and image columns
    /// (summed over workers).
    pub read_s: f64,
    /// Seconds decoding images (summed over workers).
    pub decode_s: f64,
    /// Images decoded.
    pub decoded: u64,
    /// Seconds cropping and resizing images and labels.
    pub augment_s: f64,
    /// Seconds writing samples into batch arrays.
    pub collate_s: f64,
    /// Seconds the caller waited in `next()`.
    pub wait_s: f64,
    /// Samples yielded (not padding).
    pub samples: u64,
    /// Batches yielded.
    pub batches: u64,
    /// Padding slots yielded.
    pub padding: u64,
    /// Samples left out for missing a required task's label.
    pub missing_required: u64,
}

impl Metrics {
    fn add(c: &AtomicU64, d: Duration) {
        c.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let s = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / 1e9;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            fetch_s: s(&self.fetch_ns),
            fetched_bytes: n(&self.fetched_bytes),
            read_s: s(&self.read_ns),
            decode_s: s(&self.decode_ns),
            decoded: n(&self.decoded),
            augment_s: s(&self.augment_ns),
            collate_s: s(&self.collate_ns),
            wait_s: s(&self.wait_ns),
            samples: n(&self.samples),
            batches: n(&self.batches),
            padding: n(&self.padding),
            missing_required: n(&self.missing_required),
        }
    }
}

#[derive(Clone)]
enum Source {
    Dataset(Box<Dataset>),
    Url(String, Option<u64>),
}

/// Builds a [`Loader`]; every option has a default but the tasks.
#[derive(Clone)]
pub struct LoaderBuilder {
    source: Source,
    tasks: Vec<(String, bool)>,
    batch_size: usize,
    size: (u32, u32),
    label_stride: u32,
    max_image_pixels: u64,
    crop: Crop,
    flip: f64,
    augment: bool,
    seed: u64,
    epoch: u64,
    rank: usize,
    world_size: usize,
    workers: usize,
    prefetch_bytes: u64,
    prefetch_batches: usize,
    shuffle_row_groups: usize,
    requests: usize,
    output: ImageOutput,
    labels: LabelOptions,
    corrupt: CorruptPolicy,
    balance: Balance,
    weights: Option<BTreeMap<String, f64>>,
    epoch_size: Option<u64>,
    resume: Option<LoaderState>,
    /// The prefetch budget shared by the epochs of one [`Epochs`].
    budget: Option<Arc<tokio::sync::Semaphore>>,
}

impl LoaderBuilder {
    fn with(source: Source) -> Self {
        Self {
            source,
            tasks: vec![],
            batch_size: 32,
            size: (384, 384),
            label_stride: 1,
            max_image_pixels: crate::codec::max_image_pixels(),
            crop: Crop::RandomResized {
                scale: (0.08, 1.0),
                ratio: (3.0 / 4.0, 4.0 / 3.0),
            },
            flip: 0.5,
            augment: true,
            seed: 0,
            epoch: 0,
            rank: 0,
            world_size: 1,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            prefetch_bytes: 64 << 20,
            prefetch_batches: 0,
            shuffle_row_groups: 4,
            requests: 8,
            output: ImageOutput::U8,
            labels: LabelOptions {
                min_score: 0.0,
                min_confidence: 0.0,
                missing_mass: MissingMass::Spread,
                max_boxes: None,
                min_box_size: 1.0,
            },
            corrupt: CorruptPolicy::Fail,
            balance: Balance::Drop,
            weights: None,
            epoch_size: None,
            resume: None,
            budget: None,
        }
    }

    /// A loader over an opened dataset (its version).
    pub fn new(dataset: Dataset) -> Self {
        Self::with(Source::Dataset(Box::new(dataset)))
    }

    /// A loader over the dataset at `url` (any location [`Dataset::open`]
    /// takes), at `version` or the latest.
    pub fn open(url: &str, version: Option<u64>) -> Self {
        Self::with(Source::Url(url.to_owned(), version))
    }

    /// Loads `task`; when `required`, samples without its label are left out
    /// (shards without its file are not planned; null rows become padding).
    pub fn task(mut self, task: &str, required: bool) -> Self {
        self.tasks.push((task.to_owned(), required));
        self
    }

    /// Samples per batch (default 32).
    pub fn batch_size(mut self, b: usize) -> Self {
        self.batch_size = b;
        self
    }

    /// Output width and height (default 384×384).
    pub fn output_size(mut self, width: u32, height: u32) -> Self {
        self.size = (width, height);
        self
    }

    /// Dense labels (masks, depth) at 1/`stride` of the output size, per
    /// side: 1 (default), 2, 4 or 8; the output size must be a multiple.
    pub fn label_stride(mut self, stride: u32) -> Self {
        self.label_stride = stride;
        self
    }

    /// The largest image, in pixels, that the loader decodes (default
    /// [`codec::max_image_pixels`](crate::codec::max_image_pixels), about
    /// 89 million). The size is read from the header before any allocation;
    /// a larger image is corrupt data under [`on_corrupt`](Self::on_corrupt).
    pub fn max_image_pixels(mut self, n: u64) -> Self {
        self.max_image_pixels = n.max(1);
        self
    }

    /// The crop (default: random resized crop, scale 0.08–1, ratio 3/4–4/3).
    pub fn crop(mut self, crop: Crop) -> Self {
        self.crop = crop;
        self
    }

    /// Probability of a horizontal flip (default 0.5).
    pub fn flip(mut self, p: f64) -> Self {
        self.flip = p;
        self
    }

    /// Augmentation on (default) or off: off resizes the whole image, no flip.
    pub fn augment(mut self, on: bool) -> Self {
        self.augment = on;
        self
    }

    /// Seed of the plan and the augmentation (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Epoch (default 0): every epoch has its own order and augmentation.
    pub fn epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// This process's rank among `world_size` (default 0 of 1).
    pub fn rank(mut self, rank: usize, world_size: usize) -> Self {
        self.rank = rank;
        self.world_size = world_size;
        self
    }

    /// Decode threads (default: the machine's cores).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Bytes of row groups fetched ahead and held open (estimated from file
    /// sizes; default 64 MiB).
    pub fn prefetch_bytes(mut self, bytes: u64) -> Self {
        self.prefetch_bytes = bytes.max(1 << 20);
        self
    }

    /// Batches prepared ahead (default: one per worker).
    pub fn prefetch_batches(mut self, n: usize) -> Self {
        self.prefetch_batches = n;
        self
    }

    /// Row groups open in the shuffle buffer (default 4).
    pub fn shuffle_row_groups(mut self, k: usize) -> Self {
        self.shuffle_row_groups = k.max(1);
        self
    }

    /// Row group reads in flight (default 8).
    pub fn requests_in_flight(mut self, n: usize) -> Self {
        self.requests = n.max(1);
        self
    }

    /// Pixel type of the images (default u8).
    pub fn image_output(mut self, o: ImageOutput) -> Self {
        self.output = o;
        self
    }

    /// Boxes scoring under `s` are dropped at load time (default 0).
    pub fn min_score(mut self, s: f32) -> Self {
        self.labels.min_score = s;
        self
    }

    /// Segmentation pixels with confidence under `c` (0..1) become
    /// `ignore_index` (default 0: all kept).
    pub fn min_confidence(mut self, c: f32) -> Self {
        self.labels.min_confidence = c;
        self
    }

    /// Top-k mass handling (default: spread over the other classes).
    pub fn missing_mass(mut self, m: MissingMass) -> Self {
        self.labels.missing_mass = m;
        self
    }

    /// A fixed N of boxes per sample (the top-scoring kept); default: the batch's max.
    pub fn max_boxes(mut self, n: Option<usize>) -> Self {
        self.labels.max_boxes = n;
        self
    }

    /// Corrupt data policy (default `Fail`).
    pub fn on_corrupt(mut self, p: CorruptPolicy) -> Self {
        self.corrupt = p;
        self
    }

    /// Equal batches per rank by dropping or padding (default `Drop`).
    pub fn balance(mut self, b: Balance) -> Self {
        self.balance = b;
        self
    }

    /// Mixes sources by weight (see [`plan`] for the rule).
    pub fn weights<S: Into<String>>(mut self, w: impl IntoIterator<Item = (S, f64)>) -> Self {
        self.weights = Some(w.into_iter().map(|(s, w)| (s.into(), w)).collect());
        self
    }

    /// Samples per epoch when mixing by weight (default: rows of the weighted sources).
    pub fn epoch_size(mut self, n: u64) -> Self {
        self.epoch_size = Some(n);
        self
    }

    /// Continues from a saved state (same seed, epoch, version and plan
    /// options; any world size).
    pub fn resume(mut self, state: LoaderState) -> Self {
        self.resume = Some(state);
        self
    }

    /// The state of this builder's epoch before its first batch: what
    /// [`Loader::state`] says then, and what a checkpoint taken between two
    /// epochs holds. Needs an opened dataset ([`LoaderBuilder::new`]).
    pub fn start_state(&self) -> Result<LoaderState> {
        let Source::Dataset(ds) = &self.source else {
            return Err(Error::Loader(
                "start_state needs a loader built on an opened dataset (LoaderBuilder::new)".into(),
            ));
        };
        Ok(LoaderState {
            version: ds.version(),
            seed: self.seed,
            epoch: self.epoch,
            plan: self.plan_key(),
            segments: vec![Segment {
                world_size: self.world_size,
                batches: 0,
            }],
        })
    }

    fn plan_key(&self) -> String {
        let req: Vec<&str> = self
            .tasks
            .iter()
            .filter(|t| t.1)
            .map(|t| t.0.as_str())
            .collect();
        format!(
            "b={};k={};balance={:?};required={:?};weights={:?};epoch_size={:?}",
            self.batch_size,
            self.shuffle_row_groups,
            self.balance,
            req,
            self.weights,
            self.epoch_size
        )
    }

    /// The epochs of `epochs` one after the other, with the pipeline kept
    /// full: the next epoch's first row groups are fetched and its first
    /// batches prepared while the last batches of the current one are
    /// consumed. Epoch `e` gives exactly the batches of a loader built with
    /// `.epoch(e)`; a [`resume`](Self::resume) state applies to the first.
    /// The dataset version is fixed for all of them.
    pub fn epochs(mut self, epochs: std::ops::Range<u64>) -> Result<Epochs> {
        if let Source::Url(u, v) = &self.source {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("tokio runtime", e))?;
            let ds = rt.block_on(async {
                match v {
                    Some(v) => Dataset::open_at(u, *v).await,
                    None => Dataset::open(u).await,
                }
            })?;
            self.source = Source::Dataset(Box::new(ds));
        }
        // One prefetch budget for all epochs: the next epoch's first fetches
        // wait for the bytes the current one gives back.
        self.budget = Some(Arc::new(tokio::sync::Semaphore::new(
            (self.prefetch_bytes / 1024).max(1) as usize,
        )));
        let mut rest = epochs;
        let current = match rest.next() {
            Some(e) => Some(self.clone().epoch(e).build()?),
            None => None,
        };
        self.resume = None;
        let ahead = if self.prefetch_batches == 0 {
            self.workers
        } else {
            self.prefetch_batches
        } as u64;
        Ok(Epochs {
            template: self,
            current,
            next: None,
            rest,
            ahead: ahead.max(1),
            last: MetricsSnapshot::default(),
        })
    }

    /// Checks the options (and, on an opened dataset, that every task is
    /// defined) without starting anything: what [`build`](Self::build)
    /// would refuse before planning.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Loader(m));
        if self.tasks.is_empty() {
            return bad("no task requested (LoaderBuilder::task)".into());
        }
        if self.batch_size == 0 || self.size.0 == 0 || self.size.1 == 0 {
            return bad("batch size and output size must be positive".into());
        }
        if ![1, 2, 4, 8].contains(&self.label_stride)
            || !self.size.0.is_multiple_of(self.label_stride)
            || !self.size.1.is_multiple_of(self.label_stride)
        {
            return bad(format!(
                "label stride {} must be 1, 2, 4 or 8 and divide the output size {}x{}",
                self.label_stride, self.size.0, self.size.1
            ));
        }
        if self.world_size == 0 || self.rank >= self.world_size {
            return bad(format!(
                "rank {} is not in a world of {}",
                self.rank, self.world_size
            ));
        }
        if let Source::Dataset(ds) = &self.source {
            for (t, _) in &self.tasks {
                ds.snapshot().task(t)?;
            }
        }
        Ok(())
    }

    /// Opens the dataset if needed, plans the epoch and starts the threads.
    pub fn build(self) -> Result<Loader> {
        let bad = |m: String| Err(Error::Loader(m));
        self.validate()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("must-fetch")
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        let ds = match &self.source {
            Source::Dataset(d) => (**d).clone(),
            Source::Url(u, v) => rt.block_on(async {
                match v {
                    Some(v) => Dataset::open_at(u, *v).await,
                    None => Dataset::open(u).await,
                }
            })?,
        };
        let snap = ds.snapshot();
        let mut tasks: Vec<TaskDef> = Vec::new();
        for (t, _) in &self.tasks {
            tasks.push(snap.task(t)?.clone());
        }
        let required: Vec<usize> = (0..self.tasks.len()).filter(|&i| self.tasks[i].1).collect();
        let plan_key = self.plan_key();
        if let Some(s) = &self.resume {
            let want = (snap.version, self.seed, self.epoch, &plan_key);
            if (s.version, s.seed, s.epoch, &s.plan) != want {
                return bad(format!(
                    "the state is of version {}, seed {}, epoch {}, plan {:?}; this loader has version {}, seed {}, epoch {}, plan {:?}",
                    s.version, s.seed, s.epoch, s.plan, want.0, want.1, want.2, want.3
                ));
            }
        }
        // Units: (shard, row group) of shards that have every required task.
        let mut units = Vec::new();
        for (&shard, a) in &snap.images {
            let files: Vec<Option<&crate::format::AddLabels>> = self
                .tasks
                .iter()
                .map(|(t, _)| snap.labels.get(&(t.clone(), shard)))
                .collect();
            if required.iter().any(|&i| files[i].is_none()) {
                continue;
            }
            let source = if a.sources.len() == 1 {
                a.sources.keys().next().cloned().unwrap_or_default()
            } else {
                if self.weights.is_some() && a.sources.len() > 1 {
                    return bad(format!(
                        "image shard {shard} ({}) holds several sources {:?}; weighted mixing needs one source per shard",
                        a.path,
                        a.sources.keys().collect::<Vec<_>>()
                    ));
                }
                String::new()
            };
            let shard_bytes: u64 = files
                .iter()
                .flatten()
                .fold(a.bytes, |acc, l| acc.saturating_add(l.bytes));
            for (g, &rows) in a.row_groups.iter().enumerate() {
                if rows > 0 {
                    let Ok(rows32) = u32::try_from(rows) else {
                        return bad(format!(
                            "image shard {shard} ({}): row group {g} has {rows} rows, more than the loader reads in one row group",
                            a.path
                        ));
                    };
                    let est = (shard_bytes as u128 * rows as u128 / a.rows.max(1) as u128)
                        .min(u64::MAX as u128) as u64;
                    units.push(Unit {
                        shard,
                        row_group: g,
                        rows: rows32,
                        source: source.clone(),
                        est_bytes: est,
                    });
                }
            }
        }
        let popts = PlanOptions {
            batch_size: self.batch_size,
            shuffle_row_groups: self.shuffle_row_groups,
            pad: self.balance == Balance::Pad,
            mixing: Mixing {
                weights: self.weights.clone(),
                epoch_size: self.epoch_size,
            },
            seed: self.seed,
            epoch: self.epoch,
        };
        let past = self
            .resume
            .as_ref()
            .map(|s| s.segments.clone())
            .unwrap_or_default();
        let rp = plan::rank_plan(&units, &popts, &past, self.rank, self.world_size)
            .map_err(Error::Loader)?;
        let mut segments = past;
        match segments.last() {
            Some(l) if l.world_size == self.world_size => {}
            _ => segments.push(Segment {
                world_size: self.world_size,
                batches: 0,
            }),
        }
        let state = LoaderState {
            version: snap.version,
            seed: self.seed,
            epoch: self.epoch,
            plan: plan_key,
            segments,
        };
        Ok(Loader::start(
            self,
            rt,
            Arc::new(ds),
            Arc::new(units),
            tasks,
            required,
            rp,
            state,
        ))
    }
}

/// Many epochs of one rank with the pipeline kept full
/// ([`LoaderBuilder::epochs`]): an iterator of `Result<Batch>`, each batch
/// carrying its epoch.
pub struct Epochs {
    template: LoaderBuilder,
    current: Option<Loader>,
    next: Option<Loader>,
    rest: std::ops::Range<u64>,
    ahead: u64,
    last: MetricsSnapshot,
}

impl Epochs {
    /// The current epoch's loader (`None` after the last).
    pub fn current(&self) -> Option<&Loader> {
        self.current.as_ref()
    }

    /// Where the current epoch stands (see [`Loader::state`]).
    pub fn state(&self) -> Option<LoaderState> {
        self.current.as_ref().map(Loader::state)
    }

    /// The current epoch's counters (the last epoch's after the end).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.current.as_ref().map_or(self.last, Loader::metrics)
    }

    /// Hands a batch's buffers back for reuse.
    pub fn recycle(&self, batch: Batch) {
        if let Some(l) = self.next.as_ref().or(self.current.as_ref()) {
            l.recycle(batch);
        }
    }

    /// When the current epoch has yielded its last batch, moves on to the
    /// next one (started now if it was not prefetched), so that
    /// [`current`](Self::current) is the epoch the next batch comes from.
    /// Does nothing otherwise.
    pub fn advance(&mut self) -> Result<()> {
        match self.current.as_ref() {
            Some(cur) if cur.remaining() == 0 && !cur.failed => self.last = cur.metrics(),
            _ => return Ok(()),
        }
        self.start_next()?;
        self.current = self.next.take();
        Ok(())
    }

    /// Builds the next epoch's loader if it is not built yet.
    fn start_next(&mut self) -> Result<()> {
        if self.next.is_none() {
            if let Some(e) = self.rest.next() {
                match self.template.clone().epoch(e).build() {
                    Ok(l) => self.next = Some(l),
                    Err(err) => {
                        self.rest = 0..0;
                        return Err(err);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Iterator for Epochs {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        loop {
            let cur = self.current.as_ref()?;
            if self.next.is_none() && cur.remaining() <= self.ahead {
                if let Err(err) = self.start_next() {
                    return Some(Err(err));
                }
            }
            let cur = self.current.as_mut()?;
            match cur.next() {
                Some(r) => return Some(r),
                None => {
                    self.last = cur.metrics();
                    if cur.failed {
                        self.current = None;
                        return None;
                    }
                    self.current = self.next.take();
                }
            }
        }
    }
}

/// A slot of a batch job.
enum Slot {
    /// Row `row` (within the row group) of a fetched group.
    Sample(Arc<OpenGroup>, usize),
    Empty,
    Bad(CorruptReport),
}

struct Job {
    index: u64,
    slots: Vec<Slot>,
}

struct Shared {
    tasks: Vec<TaskDef>,
    labels: LabelOptions,
    output: ImageOutput,
    size: (u32, u32),
    label_stride: u32,
    max_image_pixels: u64,
    crop: Crop,
    flip: f64,
    augment: bool,
    seed: u64,
    epoch: u64,
    batch_size: usize,
    corrupt: CorruptPolicy,
    required: Vec<usize>,
    metrics: Arc<Metrics>,
    skipped: Arc<Mutex<Vec<CorruptReport>>>,
    spare: cb::Receiver<Batch>,
}

impl Shared {
    fn skip(&self, rep: CorruptReport) {
        self.skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rep);
    }
}

/// Streams one epoch of batches for one rank: an iterator of `Result<Batch>`.
pub struct Loader {
    results: cb::Receiver<(u64, Result<Batch>)>,
    reorder: BTreeMap<u64, Result<Batch>>,
    tokens: Option<cb::Sender<()>>,
    recycle: cb::Sender<Batch>,
    next_index: u64,
    end: u64,
    state: LoaderState,
    metrics: Arc<Metrics>,
    skipped: Arc<Mutex<Vec<CorruptReport>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    rt: Option<tokio::runtime::Runtime>,
    failed: bool,
}

/// A fetched (shard, row group): the image file's and every task file's
/// compressed column chunks, decoded block by block on the workers.
struct OpenGroup {
    shard: u64,
    row_group: usize,
    first_row: u64,
    images: fetch::FileGroup,
    /// Per requested task, its file's group (`None`: no file for this shard).
    labels: Vec<Option<fetch::FileGroup>>,
    /// Set once a failure of this group was reported under `Skip`.
    reported: AtomicBool,
}

impl OpenGroup {
    /// Row `row` was used or given up: its blocks are freed after their last row.
    fn release(&self, row: usize) {
        self.images.release(row);
        for l in self.labels.iter().flatten() {
            l.release(row);
        }
    }
}

/// A fetched group as the coordinator holds it. Its share of the prefetch
/// budget is given back when the slice closes, not when the last job
/// using it ends: a batch being assembled may hold rows of a closed slice
/// while it waits for the next slice's fetch.
struct Open {
    data: std::result::Result<Arc<OpenGroup>, CorruptReport>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

type Fetched = (usize, Open);

/// Columns of a task's label file that the options read.
fn task_columns(t: &TaskDef, opts: &LabelOptions) -> Vec<&'static str> {
    use crate::format::{ClassEncoding, TaskKind};
    let mut c = vec!["image_id"];
    match &t.kind {
        TaskKind::Classification {
            encoding: ClassEncoding::Topk,
            ..
        } => c.extend(["classes", "probs"]),
        TaskKind::Classification { .. } => c.push("probs"),
        TaskKind::Detection { .. } => c.extend(["boxes", "classes", "scores"]),
        TaskKind::Segmentation { .. } => {
            c.extend(["mask", "mask_height", "mask_width"]);
            if opts.min_confidence > 0.0 {
                c.push("confidence");
            }
        }
        TaskKind::Depth { .. } => c.extend(["depth", "depth_height", "depth_width"]),
    }
    c
}

/// Image shard columns the loader reads.
const LOADER_IMAGE_COLUMNS: &[&str] = &["image_id", "source", "image", "uri"];

/// Fetches one slice's (shard, row group) in every file the loader reads.
async fn fetch_group(
    ds: &Dataset,
    unit: &Unit,
    rows: &plan::Rows,
    tasks: &[TaskDef],
    opts: &LabelOptions,
    footers: &FooterCache,
) -> Result<OpenGroup> {
    let snap = ds.snapshot();
    let a = snap.shard(unit.shard)?;
    let first_row: u64 = a.row_groups.iter().take(unit.row_group).sum();
    let g = unit.row_group;
    let images = fetch::fetch_file(
        ds,
        &a.path,
        a.bytes,
        g,
        first_row as usize,
        Some(LOADER_IMAGE_COLUMNS),
        None,
        footers,
        rows,
    );
    let labels = tasks.iter().map(|t| async move {
        match snap.labels.get(&(t.name.clone(), unit.shard)) {
            Some(l) => {
                let cols = task_columns(t, opts);
                fetch::fetch_file(
                    ds,
                    &l.path,
                    l.bytes,
                    g,
                    first_row as usize,
                    Some(&cols),
                    Some(t.clone()),
                    footers,
                    rows,
                )
                .await
                .map(Some)
            }
            None => Ok(None),
        }
    });
    let (images, labels) =
        futures::future::try_join(images, futures::future::try_join_all(labels)).await?;
    Ok(OpenGroup {
        shard: unit.shard,
        row_group: g,
        first_row,
        images,
        labels,
        reported: AtomicBool::new(false),
    })
}

impl Loader {
    #[allow(clippy::too_many_arguments)]
    fn start(
        b: LoaderBuilder,
        rt: tokio::runtime::Runtime,
        ds: Arc<Dataset>,
        units: Arc<Vec<Unit>>,
        tasks: Vec<TaskDef>,
        required: Vec<usize>,
        rp: plan::RankPlan,
        state: LoaderState,
    ) -> Loader {
        let metrics = Arc::new(Metrics::default());
        let skipped = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let ahead = if b.prefetch_batches == 0 {
            b.workers
        } else {
            b.prefetch_batches
        };
        let (tok_tx, tok_rx) = cb::bounded::<()>(ahead);
        for _ in 0..ahead {
            let _ = tok_tx.send(());
        }
        let (job_tx, job_rx) = cb::bounded::<Job>(b.workers);
        let (res_tx, res_rx) = cb::unbounded();
        // Recycled batches waiting for a worker: a couple is enough to stop allocating.
        let (spare_tx, spare_rx) = cb::bounded::<Batch>(2);

        // Fetch: the rank's slices in the order the sampler needs them.
        let order: Vec<(usize, usize, plan::Rows)> = rp
            .sampler
            .pending_slices()
            .into_iter()
            .map(|s| {
                let sl = &rp.sampler.slices()[s];
                (s, sl.unit as usize, sl.rows.clone())
            })
            .collect();
        let (fetch_tx, fetch_rx) = tokio::sync::mpsc::unbounded_channel::<Fetched>();
        let budget_kib = (b.prefetch_bytes / 1024).max(1) as usize;
        let cap = (budget_kib / (b.shuffle_row_groups + 1)).max(1);
        let sem = b
            .budget
            .clone()
            .unwrap_or_else(|| Arc::new(tokio::sync::Semaphore::new(budget_kib)));
        let fetch_tasks: Arc<Vec<TaskDef>> = Arc::new(tasks.clone());
        {
            let (ds, units, metrics) = (ds.clone(), units.clone(), metrics.clone());
            let requests = b.requests;
            let opts = b.labels.clone();
            rt.spawn(async move {
                let footers = Arc::new(FooterCache::new(256));
                let opts = Arc::new(opts);
                let stream = futures::stream::iter(order)
                    .then(|(s, u, rows)| {
                        let sem = sem.clone();
                        let want = ((units[u].est_bytes / 1024) as usize).clamp(1, cap);
                        async move {
                            let permit = sem.acquire_many_owned(want as u32).await;
                            (s, u, rows, permit)
                        }
                    })
                    .map(|(s, u, rows, permit)| {
                        let (ds, units, footers, tasks, metrics, opts) = (
                            ds.clone(),
                            units.clone(),
                            footers.clone(),
                            fetch_tasks.clone(),
                            metrics.clone(),
                            opts.clone(),
                        );
                        async move {
                            let permit = permit.ok()?;
                            let unit = &units[u];
                            let t0 = Instant::now();
                            let r = fetch_group(&ds, unit, &rows, &tasks, &opts, &footers).await;
                            Metrics::add(&metrics.fetch_ns, t0.elapsed());
                            let data = match r {
                                Ok(g) => {
                                    let n = g.images.fetched_bytes()
                                        + g.labels
                                            .iter()
                                            .flatten()
                                            .map(|l| l.fetched_bytes())
                                            .sum::<u64>();
                                    metrics.fetched_bytes.fetch_add(n, Ordering::Relaxed);
                                    Ok(Arc::new(g))
                                }
                                Err(e) => Err(CorruptReport {
                                    file: ds.snapshot().images.get(&unit.shard).map_or_else(
                                        || format!("image shard {}", unit.shard),
                                        |a| a.path.clone(),
                                    ),
                                    row_group: unit.row_group,
                                    image_id: None,
                                    reason: e.to_string(),
                                }),
                            };
                            Some((s, data, permit))
                        }
                    })
                    .buffered(requests);
                futures::pin_mut!(stream);
                while let Some(item) = stream.next().await {
                    let Some((s, data, permit)) = item else {
                        return;
                    };
                    let open = Open {
                        data,
                        _permit: permit,
                    };
                    if fetch_tx.send((s, open)).is_err() {
                        return;
                    }
                }
            });
        }

        let shared = Arc::new(Shared {
            tasks,
            labels: b.labels.clone(),
            output: b.output,
            size: b.size,
            label_stride: b.label_stride,
            max_image_pixels: b.max_image_pixels,
            crop: b.crop.clone(),
            flip: b.flip,
            augment: b.augment,
            seed: b.seed,
            epoch: b.epoch,
            batch_size: b.batch_size,
            corrupt: b.corrupt,
            required,
            metrics: metrics.clone(),
            skipped: skipped.clone(),
            spare: spare_rx,
        });
        let mut threads = Vec::new();
        // Coordinator: the shuffle buffer, one job per batch.
        {
            let (stop, shared) = (stop.clone(), shared.clone());
            let (done, end) = (rp.done, rp.batches);
            let mut sampler = rp.sampler;
            threads.push(
                std::thread::Builder::new()
                    .name("must-plan".into())
                    .spawn(move || {
                        let mut fetch_rx = fetch_rx;
                        let mut open: HashMap<usize, Open> = HashMap::new();
                        let mut reported: std::collections::HashSet<usize> = Default::default();
                        for index in done..end {
                            if tok_rx.recv().is_err() || stop.load(Ordering::Relaxed) {
                                return;
                            }
                            let mut slots = Vec::with_capacity(shared.batch_size);
                            for _ in 0..shared.batch_size {
                                let Some(d) = sampler.draw() else {
                                    slots.push(Slot::Empty);
                                    continue;
                                };
                                while !open.contains_key(&d.slice) {
                                    match fetch_rx.blocking_recv() {
                                        Some((s, o)) => {
                                            open.insert(s, o);
                                        }
                                        None => return,
                                    }
                                }
                                let o = &open[&d.slice];
                                slots.push(match &o.data {
                                    Ok(g) => Slot::Sample(g.clone(), d.row as usize),
                                    Err(rep) => match shared.corrupt {
                                        CorruptPolicy::Fail => Slot::Bad(rep.clone()),
                                        CorruptPolicy::Skip => {
                                            if reported.insert(d.slice) {
                                                shared.skip(rep.clone());
                                            }
                                            Slot::Empty
                                        }
                                    },
                                });
                                if d.closes {
                                    open.remove(&d.slice);
                                }
                            }
                            if job_tx.send(Job { index, slots }).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawning the loader's plan thread"),
            );
        }
        for w in 0..b.workers {
            let (job_rx, res_tx, shared) = (job_rx.clone(), res_tx.clone(), shared.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("must-decode-{w}"))
                    .spawn(move || {
                        let mut ws = WorkerState::default();
                        while let Ok(job) = job_rx.recv() {
                            let index = job.index;
                            let r = build_batch(job, &shared, &mut ws);
                            if res_tx.send((index, r)).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawning a loader decode thread"),
            );
        }
        Loader {
            results: res_rx,
            reorder: BTreeMap::new(),
            tokens: Some(tok_tx),
            recycle: spare_tx,
            next_index: rp.done,
            end: rp.batches,
            state,
            metrics,
            skipped,
            stop,
            threads,
            rt: Some(rt),
            failed: false,
        }
    }

    /// Where the loader stands: after the last batch `next()` returned.
    pub fn state(&self) -> LoaderState {
        self.state.clone()
    }

    /// The epoch this loader yields.
    pub fn epoch(&self) -> u64 {
        self.state.epoch
    }

    /// Batches this rank yields in the epoch (all of them, from the start).
    pub fn batches_per_epoch(&self) -> u64 {
        self.end
    }

    /// Batches still to come.
    pub fn remaining(&self) -> u64 {
        self.end - self.next_index
    }

    /// Counters of time and volume.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// What the `Skip` policy left out so far.
    pub fn skipped(&self) -> Vec<CorruptReport> {
        self.skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Hands a batch's buffers back for reuse by a later batch.
    pub fn recycle(&self, batch: Batch) {
        let _ = self.recycle.try_send(batch);
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.failed || self.next_index >= self.end {
            return None;
        }
        let t0 = Instant::now();
        let r = loop {
            if let Some(r) = self.reorder.remove(&self.next_index) {
                break r;
            }
            match self.results.recv() {
                Ok((i, r)) => {
                    self.reorder.insert(i, r);
                }
                Err(_) => {
                    break Err(Error::Loader(
                        "the loader's threads stopped before the end of the epoch".into(),
                    ))
                }
            }
        };
        Metrics::add(&self.metrics.wait_ns, t0.elapsed());
        self.next_index += 1;
        if let Some(t) = &self.tokens {
            let _ = t.try_send(());
        }
        match &r {
            Ok(b) => {
                if let Some(s) = self.state.segments.last_mut() {
                    s.batches += 1;
                }
                let pad = b.padding.iter().filter(|p| **p).count() as u64;
                self.metrics.batches.fetch_add(1, Ordering::Relaxed);
                self.metrics.padding.fetch_add(pad, Ordering::Relaxed);
                self.metrics
                    .samples
                    .fetch_add(b.batch_size as u64 - pad, Ordering::Relaxed);
            }
            Err(_) => self.failed = true,
        }
        Some(r)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tokens = None;
        // Unblock the coordinator and the workers: drop what they would send to.
        let (_, dead) = cb::unbounded();
        self.results = dead;
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[derive(Default)]
struct WorkerState {
    rgb: Rgb,
    resizer: Resizer,
}

fn build_batch(job: Job, sh: &Shared, ws: &mut WorkerState) -> Result<Batch> {
    let (w, h) = sh.size;
    let b = sh.batch_size;
    let hw = (w * h) as usize;
    let col = batch::Collator {
        tasks: &sh.tasks,
        opts: &sh.labels,
        b,
        w,
        h,
        stride: sh.label_stride,
    };
    let (lw, lh) = col.label_size();
    let mut batch = match sh.spare.try_recv() {
        Ok(old) => old,
        Err(_) => Batch {
            epoch: sh.epoch,
            index: 0,
            batch_size: b,
            height: h,
            width: w,
            label_height: lh,
            label_width: lw,
            images: Images::U8(Vec::new()),
            image_ids: vec![],
            sources: vec![],
            padding: vec![],
            tasks: BTreeMap::new(),
        },
    };
    batch.epoch = sh.epoch;
    batch.index = job.index;
    batch.batch_size = b;
    (batch.width, batch.height) = (w, h);
    (batch.label_width, batch.label_height) = (lw, lh);
    batch.image_ids.clear();
    batch.image_ids.resize(b, String::new());
    batch.sources.clear();
    batch.sources.resize(b, String::new());
    batch.padding.clear();
    batch.padding.resize(b, true);
    batch.images = match (
        std::mem::replace(&mut batch.images, Images::U8(vec![])),
        sh.output,
    ) {
        // A reused buffer keeps stale pixels: every slot is written, or
        // cleared below when it stays padding.
        (Images::U8(mut v), ImageOutput::U8) => {
            v.resize(b * 3 * hw, 0);
            Images::U8(v)
        }
        (Images::F32(mut v), ImageOutput::F32 { .. }) => {
            v.resize(b * 3 * hw, 0.0);
            Images::F32(v)
        }
        (_, ImageOutput::U8) => Images::U8(vec![0; b * 3 * hw]),
        (_, ImageOutput::F32 { .. }) => Images::F32(vec![0.0; b * 3 * hw]),
    };
    batch.tasks = col.empty_tasks(Some(std::mem::take(&mut batch.tasks)));
    let mut boxes: BTreeMap<String, Vec<Vec<batch::BoxOut>>> = BTreeMap::new();
    let mut slots = job.slots.into_iter().enumerate();
    let mut failed = None;
    for (i, slot) in slots.by_ref() {
        let (g, row) = match slot {
            Slot::Empty => continue,
            Slot::Bad(rep) => {
                failed = Some(rep);
                break;
            }
            Slot::Sample(g, row) => (g, row),
        };
        let r = fill_sample(&mut batch, i, &g, row, sh, ws, &col, &mut boxes);
        g.release(row);
        match r {
            Ok(true) => batch.padding[i] = false,
            Ok(false) => {
                // Missing a required task: padding (cleared below).
                sh.metrics.missing_required.fetch_add(1, Ordering::Relaxed);
            }
            Err((image_id, reason)) => {
                let rep = CorruptReport {
                    file: g.images.path.to_string(),
                    row_group: g.row_group,
                    image_id,
                    reason,
                };
                match sh.corrupt {
                    CorruptPolicy::Fail => {
                        failed = Some(rep);
                        break;
                    }
                    CorruptPolicy::Skip => {
                        // The slot stays padding, cleared below.
                        batch.image_ids[i].clear();
                        batch.sources[i].clear();
                        for v in boxes.values_mut() {
                            if let Some(x) = v.get_mut(i) {
                                x.clear();
                            }
                        }
                        // A whole group that cannot be read is reported once.
                        if rep.image_id.is_some() || !g.reported.swap(true, Ordering::Relaxed) {
                            sh.skip(rep);
                        }
                    }
                }
            }
        }
    }
    // Rows of the job not reached (after a failure) are given up too.
    for (_, slot) in slots {
        if let Slot::Sample(g, row) = slot {
            g.release(row);
        }
    }
    if let Some(rep) = failed {
        return Err(rep.into());
    }
    let t0 = Instant::now();
    for i in 0..b {
        if batch.padding[i] {
            clear_image(&mut batch.images, i, hw);
            col.clear(&mut batch.tasks, i);
        }
    }
    for (name, tb) in batch.tasks.iter_mut() {
        col.finish_boxes(tb, boxes.remove(name).unwrap_or_default());
    }
    Metrics::add(&sh.metrics.collate_ns, t0.elapsed());
    Ok(batch)
}

fn clear_image(images: &mut Images, i: usize, hw: usize) {
    match images {
        Images::U8(v) => v[i * 3 * hw..(i + 1) * 3 * hw].fill(0),
        Images::F32(v) => v[i * 3 * hw..(i + 1) * 3 * hw].fill(0.0),
    }
}

/// What went wrong with a sample: its image id when known, and why.
type SampleError = (Option<String>, String);

/// Fills slot `i` with row `row` of group `g`: `Ok(false)` when a required
/// task has no label (the slot stays padding).
#[allow(clippy::too_many_arguments)]
fn fill_sample(
    batch: &mut Batch,
    i: usize,
    g: &OpenGroup,
    row: usize,
    sh: &Shared,
    ws: &mut WorkerState,
    col: &batch::Collator<'_>,
    boxes: &mut BTreeMap<String, Vec<Vec<batch::BoxOut>>>,
) -> std::result::Result<bool, SampleError> {
    let (w, h) = sh.size;
    let hw = (w * h) as usize;
    let t_read = Instant::now();
    let (img_block, k) = g.images.get(row).map_err(|e| (None, e))?;
    let fetch::Decoded::Images {
        ids,
        source,
        image,
        uri,
    } = &*img_block
    else {
        return Err((None, "image columns expected".into()));
    };
    let image_id = ids.value(k);
    let err = |e: String| (Some(image_id.to_owned()), e);
    // Every task's block first: a required task without a label leaves the
    // slot as padding before any pixel is decoded.
    let mut labels = Vec::with_capacity(sh.tasks.len());
    for file in &g.labels {
        let Some(file) = file else {
            labels.push(None);
            continue;
        };
        let (blk, j) = file.get(row).map_err(err)?;
        labels.push(Some((blk, j, file)));
    }
    let mut refs: Vec<Option<crate::codec::LabelRef<'_>>> = Vec::with_capacity(labels.len());
    for l in &labels {
        let Some((blk, j, file)) = l else {
            refs.push(None);
            continue;
        };
        let fetch::Decoded::Labels(cols) = &**blk else {
            return Err(err("label columns expected".into()));
        };
        if cols.image_id(*j) != image_id {
            return Err(err(format!(
                "{}: row {} has image_id {:?} where the image shard has {image_id:?} (misaligned)",
                file.path,
                g.first_row as usize + row,
                cols.image_id(*j)
            )));
        }
        refs.push(cols.get(*j).map_err(|e| err(e.to_string()))?);
    }
    Metrics::add(&sh.metrics.read_ns, t_read.elapsed());
    if sh.required.iter().any(|&t| refs[t].is_none()) {
        return Ok(false);
    }
    let bytes = image
        .as_ref()
        .filter(|c| !c.is_null(k))
        .map(|c| c.as_binary::<i32>().value(k));
    let Some(bytes) = bytes else {
        let u = uri
            .as_ref()
            .filter(|c| !c.is_null(k))
            .map(|c| c.as_string::<i32>().value(k));
        return Err(err(match u {
            Some(u) => {
                format!("image not embedded (uri {u}); the loader reads embedded images only")
            }
            None => "no image bytes".into(),
        }));
    };
    let t0 = Instant::now();
    crate::codec::decode_rgb(bytes, &mut ws.rgb, sh.max_image_pixels).map_err(err)?;
    let t1 = Instant::now();
    Metrics::add(&sh.metrics.decode_ns, t1 - t0);
    sh.metrics.decoded.fetch_add(1, Ordering::Relaxed);
    let mut rng = Rng::new(&[sh.seed, sh.epoch, g.shard, g.first_row + row as u64, 3]);
    let (iw, ih) = (ws.rgb.width, ws.rgb.height);
    let geo = if sh.augment {
        augment::draw(&sh.crop, sh.flip, iw, ih, w, h, &mut rng)
    } else {
        augment::draw(&Crop::Resize, 0.0, iw, ih, w, h, &mut rng)
    };
    ws.resizer.render(&ws.rgb, &geo, w, h).map_err(err)?;
    let t2 = Instant::now();
    // Interleaved RGB → planar, into the batch, mirrored when flipped.
    let px = ws.resizer.output();
    let slot = i * 3 * hw..(i + 1) * 3 * hw;
    match (&mut batch.images, sh.output) {
        (Images::U8(v), _) => to_planar(px, &mut v[slot], w as usize, geo.flip, |_, x| x),
        (Images::F32(v), ImageOutput::F32 { mean, std }) => {
            let scale = std.map(|s| 1.0 / (255.0 * s));
            let off = [0, 1, 2].map(|c| mean[c] / std[c]);
            to_planar(px, &mut v[slot], w as usize, geo.flip, |c, x| {
                x as f32 * scale[c] - off[c]
            })
        }
        (Images::F32(_), ImageOutput::U8) => {
            return Err(err("image buffer of the wrong type".into()))
        }
    }
    let t3 = Instant::now();
    Metrics::add(&sh.metrics.collate_ns, t3 - t2);
    for (t, label) in sh.tasks.iter().zip(refs) {
        let Some(tb) = batch.tasks.get_mut(&t.name) else {
            continue;
        };
        let Some(label) = label else {
            col.clear_task(tb, i);
            continue;
        };
        if let Some(bx) = col.put(tb, t, i, label, &geo, iw, ih).map_err(err)? {
            let v = boxes
                .entry(t.name.clone())
                .or_insert_with(|| vec![vec![]; sh.batch_size]);
            v[i] = bx;
        }
    }
    Metrics::add(&sh.metrics.augment_ns, (t2 - t1) + t3.elapsed());
    batch.image_ids[i] = image_id.to_owned();
    batch.sources[i] = source
        .as_ref()
        .filter(|c| !c.is_null(k))
        .map(|c| c.as_string::<i32>().value(k).to_owned())
        .unwrap_or_default();
    Ok(true)
}

/// Reads, as the loader would, every (image shard, row group) that holds
/// the tasks: fetches the columns the options need, decompresses and
/// parses them, and checks every label, on `workers` threads, decoding no
/// image. Its time is the read floor of an epoch (`must-ds bench`).
/// Returns (rows, seconds).
pub fn read_alone(
    ds: &Dataset,
    tasks: &[&str],
    opts: &LabelOptions,
    workers: usize,
) -> Result<(u64, f64)> {
    let snap = ds.snapshot();
    let defs: Vec<TaskDef> = tasks
        .iter()
        .map(|t| snap.task(t).cloned())
        .collect::<Result<_>>()?;
    let mut units = Vec::new();
    for (&shard, a) in &snap.images {
        for (g, &rows) in a.row_groups.iter().enumerate() {
            units.push(Unit {
                shard,
                row_group: g,
                rows: rows as u32,
                source: String::new(),
                est_bytes: 0,
            });
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    let footers = FooterCache::new(256);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let rows = AtomicU64::new(0);
    let t0 = Instant::now();
    let r: Result<()> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| Error::io("tokio runtime", e))?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(u) = units.get(i) else { return Ok(()) };
                        let g = rt.block_on(fetch_group(
                            ds,
                            u,
                            &plan::Rows::All,
                            &defs,
                            opts,
                            &footers,
                        ))?;
                        for row in 0..u.rows as usize {
                            let fail = |e: String| Error::Loader(format!("{}: {e}", g.images.path));
                            let (img, k) = g.images.get(row).map_err(fail)?;
                            if let fetch::Decoded::Images { image, .. } = &*img {
                                std::hint::black_box(image.as_ref().map(|c| c.len() + k));
                            }
                            for (t, file) in defs.iter().zip(&g.labels) {
                                let Some(file) = file else { continue };
                                let (blk, j) = file.get(row).map_err(fail)?;
                                if let fetch::Decoded::Labels(cols) = &*blk {
                                    if let Some(l) = cols.get(j)? {
                                        l.check(t)
                                            .map_err(|e| Error::value(cols.location(j), e))?;
                                    }
                                }
                            }
                            g.release(row);
                        }
                        rows.fetch_add(u.rows as u64, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| Error::Loader("a read thread panicked".into()))??;
        }
        Ok(())
    });
    drop(rt);
    r?;
    Ok((rows.load(Ordering::Relaxed), t0.elapsed().as_secs_f64()))
}
