//! The builder: options with their defaults, checked into a
//! [`Config`](super::config::Config), then the epoch planned
//! (the rank's [`RankPlan`](super::plan::RankPlan)) and the stages started.

use std::sync::Arc;

use super::augment::Crop;
use super::batch::{LabelOptions, MissingMass};
use super::config::{Balance, Config, ImageOutput, LoaderState, Options};
use super::corrupt::CorruptPolicy;
use super::epochs::Epochs;
use super::metrics::MetricsSnapshot;
use super::plan::{self, Mixing, PlanOptions, Segment, Unit};
use super::Loader;
use crate::error::{Error, Result};
use crate::format::TaskDef;
use crate::store::Dataset;

#[derive(Clone)]
enum Source {
    Dataset(Box<Dataset>),
    Url(String, Option<u64>),
}

/// Builds a [`Loader`]; every option has a default but the tasks.
#[derive(Clone)]
pub struct LoaderBuilder {
    source: Source,
    o: Options,
    resume: Option<LoaderState>,
    /// The prefetch budget shared by the epochs of one [`Epochs`].
    budget: Option<Arc<tokio::sync::Semaphore>>,
}

impl LoaderBuilder {
    fn with(source: Source) -> Self {
        Self {
            source,
            o: Options::default(),
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
        self.o.tasks.push((task.to_owned(), required));
        self
    }

    /// Samples per batch (default 32).
    pub fn batch_size(mut self, b: usize) -> Self {
        self.o.batch_size = b;
        self
    }

    /// Output width and height (default 384×384).
    pub fn output_size(mut self, width: u32, height: u32) -> Self {
        self.o.size = (width, height);
        self
    }

    /// Dense labels (masks, depth) at 1/`stride` of the output size, per
    /// side: 1 (default), 2, 4 or 8; the output size must be a multiple.
    pub fn label_stride(mut self, stride: u32) -> Self {
        self.o.label_stride = stride;
        self
    }

    /// The largest image, in pixels, that the loader decodes (default
    /// [`codec::max_image_pixels`](crate::codec::max_image_pixels), about
    /// 89 million). The size is read from the header before any allocation;
    /// a larger image is corrupt data under [`on_corrupt`](Self::on_corrupt).
    pub fn max_image_pixels(mut self, n: u64) -> Self {
        self.o.max_image_pixels = n.max(1);
        self
    }

    /// The crop (default: random resized crop, scale 0.08–1, ratio 3/4–4/3).
    pub fn crop(mut self, crop: Crop) -> Self {
        self.o.crop = crop;
        self
    }

    /// Probability of a horizontal flip (default 0.5).
    pub fn flip(mut self, p: f64) -> Self {
        self.o.flip = p;
        self
    }

    /// Augmentation on (default) or off: off resizes the whole image, no flip.
    pub fn augment(mut self, on: bool) -> Self {
        self.o.augment = on;
        self
    }

    /// Seed of the plan and the augmentation (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.o.seed = seed;
        self
    }

    /// Epoch (default 0): every epoch has its own order and augmentation.
    pub fn epoch(mut self, epoch: u64) -> Self {
        self.o.epoch = epoch;
        self
    }

    /// This process's rank among `world_size` (default 0 of 1).
    pub fn rank(mut self, rank: usize, world_size: usize) -> Self {
        self.o.rank = rank;
        self.o.world_size = world_size;
        self
    }

    /// Decode threads (default: the machine's cores).
    pub fn workers(mut self, n: usize) -> Self {
        self.o.workers = n.max(1);
        self
    }

    /// Bytes of row groups fetched ahead and held open (estimated from file
    /// sizes; default 64 MiB).
    pub fn prefetch_bytes(mut self, bytes: u64) -> Self {
        self.o.prefetch_bytes = bytes.max(1 << 20);
        self
    }

    /// Batches prepared ahead (default: one per worker).
    pub fn prefetch_batches(mut self, n: usize) -> Self {
        self.o.prefetch_batches = n;
        self
    }

    /// Row groups open in the shuffle buffer (default 4).
    pub fn shuffle_row_groups(mut self, k: usize) -> Self {
        self.o.shuffle_row_groups = k.max(1);
        self
    }

    /// Row group reads in flight (default 8).
    pub fn requests_in_flight(mut self, n: usize) -> Self {
        self.o.requests = n.max(1);
        self
    }

    /// Pixel type of the images (default u8).
    pub fn image_output(mut self, o: ImageOutput) -> Self {
        self.o.output = o;
        self
    }

    /// Boxes scoring under `s` are dropped at load time (default 0).
    pub fn min_score(mut self, s: f32) -> Self {
        self.o.labels.min_score = s;
        self
    }

    /// Segmentation pixels with confidence under `c` (0..1) become
    /// `ignore_index` (default 0: all kept).
    pub fn min_confidence(mut self, c: f32) -> Self {
        self.o.labels.min_confidence = c;
        self
    }

    /// Top-k mass handling (default: spread over the other classes).
    pub fn missing_mass(mut self, m: MissingMass) -> Self {
        self.o.labels.missing_mass = m;
        self
    }

    /// A fixed N of boxes per sample (the top-scoring kept); default: the batch's max.
    pub fn max_boxes(mut self, n: Option<usize>) -> Self {
        self.o.labels.max_boxes = n;
        self
    }

    /// Boxes narrower or lower than `px` output pixels after the crop are
    /// dropped (default 1).
    pub fn min_box_size(mut self, px: f32) -> Self {
        self.o.labels.min_box_size = px;
        self
    }

    /// Every load-time label option at once (see [`LabelOptions`]; each
    /// also has its own setter).
    pub fn label_options(mut self, opts: LabelOptions) -> Self {
        self.o.labels = opts;
        self
    }

    /// Corrupt data policy (default `Fail`).
    pub fn on_corrupt(mut self, p: CorruptPolicy) -> Self {
        self.o.corrupt = p;
        self
    }

    /// Equal batches per rank by dropping or padding (default `Drop`).
    pub fn balance(mut self, b: Balance) -> Self {
        self.o.balance = b;
        self
    }

    /// Mixes sources by weight (see [the plan](super#the-plan) for the rule).
    pub fn weights<S: Into<String>>(mut self, w: impl IntoIterator<Item = (S, f64)>) -> Self {
        self.o.weights = Some(w.into_iter().map(|(s, w)| (s.into(), w)).collect());
        self
    }

    /// Samples per epoch when mixing by weight (default: rows of the weighted sources).
    pub fn epoch_size(mut self, n: u64) -> Self {
        self.o.epoch_size = Some(n);
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
            seed: self.o.seed,
            epoch: self.o.epoch,
            plan: self.o.plan_key(),
            segments: vec![Segment {
                world_size: self.o.world_size,
                batches: 0,
            }],
        })
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
            let ds = rt.block_on(open_url(u, *v))?;
            self.source = Source::Dataset(Box::new(ds));
        }
        // One prefetch budget for all epochs: the next epoch's first fetches
        // wait for the bytes the current one gives back.
        let cfg = self.check()?;
        self.budget = Some(Arc::new(tokio::sync::Semaphore::new(cfg.budget_kib)));
        let mut rest = epochs;
        let current = match rest.next() {
            Some(e) => Some(self.clone().epoch(e).build()?),
            None => None,
        };
        self.resume = None;
        Ok(Epochs {
            template: self,
            current,
            next: None,
            rest,
            ahead: cfg.ahead as u64,
            last: MetricsSnapshot::default(),
        })
    }

    /// Checks the options (and, on an opened dataset, that every task is
    /// defined) without starting anything: what [`build`](Self::build)
    /// would refuse before planning.
    pub fn validate(&self) -> Result<()> {
        self.check().map(|_| ())
    }

    /// The checked options: [`validate`](Self::validate)'s work, kept.
    fn check(&self) -> Result<Config> {
        let cfg = self.o.check()?;
        if let Source::Dataset(ds) = &self.source {
            for (t, _) in &self.o.tasks {
                ds.snapshot().task(t)?;
            }
        }
        Ok(cfg)
    }

    /// Opens the dataset if needed, plans the epoch and starts the threads.
    pub fn build(self) -> Result<Loader> {
        let bad = |m: String| Err(Error::Loader(m));
        let cfg = Arc::new(self.check()?);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("must-fetch")
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        let ds = match &self.source {
            Source::Dataset(d) => (**d).clone(),
            Source::Url(u, v) => rt.block_on(open_url(u, *v))?,
        };
        let snap = ds.snapshot();
        let mut tasks: Vec<TaskDef> = Vec::new();
        for (t, _) in &self.o.tasks {
            tasks.push(snap.task(t)?.clone());
        }
        let required: Vec<usize> = (0..self.o.tasks.len())
            .filter(|&i| self.o.tasks[i].1)
            .collect();
        let plan_key = self.o.plan_key();
        if let Some(s) = &self.resume {
            let want = (snap.version, self.o.seed, self.o.epoch, &plan_key);
            if (s.version, s.seed, s.epoch, &s.plan) != want {
                return bad(format!(
                    "the state is of version {}, seed {}, epoch {}, plan {:?}; this loader has version {}, seed {}, epoch {}, plan {:?}",
                    s.version,
                    s.seed,
                    s.epoch,
                    s.plan.to_string(),
                    want.0,
                    want.1,
                    want.2,
                    want.3.to_string()
                ));
            }
        }
        // Units: (shard, row group) of shards that have every required task.
        let mut units = Vec::new();
        for (&shard, a) in &snap.images {
            let files: Vec<Option<&crate::format::AddLabels>> = self
                .o
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
                if self.o.weights.is_some() && a.sources.len() > 1 {
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
            batch_size: self.o.batch_size,
            shuffle_row_groups: self.o.shuffle_row_groups,
            pad: self.o.balance == Balance::Pad,
            mixing: Mixing {
                weights: self.o.weights.clone(),
                epoch_size: self.o.epoch_size,
            },
            seed: self.o.seed,
            epoch: self.o.epoch,
        };
        let past = self
            .resume
            .as_ref()
            .map(|s| s.segments.clone())
            .unwrap_or_default();
        let rp = plan::rank_plan(&units, &popts, &past, self.o.rank, self.o.world_size)
            .map_err(Error::Loader)?;
        let mut segments = past;
        match segments.last() {
            Some(l) if l.world_size == self.o.world_size => {}
            _ => segments.push(Segment {
                world_size: self.o.world_size,
                batches: 0,
            }),
        }
        let state = LoaderState {
            version: snap.version,
            seed: self.o.seed,
            epoch: self.o.epoch,
            plan: plan_key,
            segments,
        };
        Ok(Loader::start(
            cfg,
            self.budget,
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

/// The dataset at `url`, at `version` or the latest.
async fn open_url(url: &str, version: Option<u64>) -> Result<Dataset> {
    match version {
        Some(v) => Dataset::open_at(url, v).await,
        None => Dataset::open(url).await,
    }
}
