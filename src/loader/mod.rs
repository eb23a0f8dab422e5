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
//!   [the plan](#the-plan) for the rule, by [`Balance`]).
//! * **Resumption.** [`Loader::state`] after any batch is the same small value
//!   on every rank; a loader built with [`LoaderBuilder::resume`] yields
//!   exactly the batches an uninterrupted run would have yielded next, and
//!   skipped samples are neither fetched beyond their row group nor decoded.
//!   Resumed with another world size, the new ranks share the samples that
//!   no rank had yielded: none repeated, none lost (only padding or the
//!   `Drop` remainder can differ from the uninterrupted run).
//!
//! # The plan
//!
//! Which samples each rank loads, in which order, from (seed, epoch, rank,
//! world size) alone; no data is read, so resuming replays it in
//! milliseconds.
//!
//! 1. **Units** are the (image shard, row group) pairs of the version.
//! 2. **Global order.** Units are grouped by source. Without weights every
//!    unit is taken once. With weights, source `s` gets a quota of
//!    `round(w_s / Σw × epoch_size)` samples (`epoch_size` defaults to the
//!    rows of the weighted sources): it runs through its units in a fresh
//!    shuffled order per pass, as many passes as the quota needs, the last
//!    one cut to a random subset of rows of its last unit. The sources'
//!    slices are then merged by their position within their own stream
//!    (`(samples before + half the slice) / quota`), so that every stretch of
//!    the global order holds the sources in proportion to their weights.
//! 3. **Ranks.** Slices, in global order, go each to the rank holding the
//!    fewest samples so far (the lowest rank on ties): ranks read disjoint
//!    row groups and differ by at most one row group in samples. Every rank
//!    then yields the same number of batches: `floor(min / B)` when
//!    dropping, `ceil(max / B)` when padding (padding slots are empty).
//! 4. **Shuffle buffer.** A rank keeps up to K slices open and draws each
//!    sample uniformly from all rows still open; a slice closes when its last
//!    row is drawn and the next one opens.
//! 5. **Segments.** Resuming with another world size ends the current
//!    segment: the rows no rank drew (open and unopened slices of every rank,
//!    merged rank by rank) become the next segment's global order, split
//!    between the new ranks as in 3. Nothing is repeated or lost.
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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel as cb;

use crate::error::{Error, Result};
use crate::format::TaskDef;
use crate::store::Dataset;

pub mod augment;
pub mod batch;
mod builder;
mod collate;
mod config;
mod coordinator;
mod corrupt;
mod epochs;
mod fetch;
mod group;
mod metrics;
mod plan;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
/// The plan's dataset-free core, for the fuzz targets (feature `fuzzing`):
/// not part of the API.
pub mod fuzzing {
    pub use super::plan::{rank_plan, Mixing, PlanOptions, Unit};
}
mod shared;
mod worker;

pub use augment::Crop;
pub use batch::{Batch, Images, LabelOptions, Mask, MissingMass, TaskBatch, TaskData};
pub use builder::LoaderBuilder;
pub use config::{Balance, ImageOutput, LoaderState, PlanKey};
pub use corrupt::{CorruptPolicy, CorruptReport};
pub use epochs::Epochs;
pub use group::read_alone;
pub use metrics::{Metrics, MetricsSnapshot};
pub use plan::{Rng, Segment};

use config::Config;
use coordinator::Job;
use plan::{RankPlan, Unit};
use shared::Shared;
use worker::{build_batch, WorkerState};

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
    /// Set once a batch failed: the epoch ends there.
    pub(super) failed: bool,
}

impl Loader {
    /// Starts the stages of a planned epoch: the fetch on `rt`, the
    /// coordinator and `cfg.workers` workers on threads of their own.
    #[allow(clippy::too_many_arguments)]
    fn start(
        cfg: Arc<Config>,
        budget: Option<Arc<tokio::sync::Semaphore>>,
        rt: tokio::runtime::Runtime,
        ds: Arc<Dataset>,
        units: Arc<Vec<Unit>>,
        tasks: Vec<TaskDef>,
        required: Vec<usize>,
        rp: RankPlan,
        state: LoaderState,
    ) -> Loader {
        let metrics = Arc::new(Metrics::default());
        let skipped = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tok_tx, tok_rx) = cb::bounded::<()>(cfg.ahead);
        for _ in 0..cfg.ahead {
            let _ = tok_tx.send(());
        }
        let (job_tx, job_rx) = cb::bounded::<Job>(cfg.workers);
        let (res_tx, res_rx) = cb::unbounded();
        // Recycled batches waiting for a worker: a couple is enough to stop allocating.
        let (spare_tx, spare_rx) = cb::bounded::<Batch>(2);
        let fetch_rx = group::spawn_fetch(
            &rt,
            &cfg,
            budget,
            ds,
            units,
            &rp.sampler,
            &tasks,
            metrics.clone(),
        );
        let workers = cfg.workers;
        let shared = Arc::new(Shared {
            cfg,
            tasks,
            required,
            metrics: metrics.clone(),
            skipped: skipped.clone(),
            spare: spare_rx,
        });
        let mut threads = Vec::new();
        {
            let (stop, shared) = (stop.clone(), shared.clone());
            let (sampler, batches) = (rp.sampler, rp.done..rp.batches);
            let ch = coordinator::Channels {
                tokens: tok_rx,
                fetched: fetch_rx,
                jobs: job_tx,
            };
            threads.push(
                std::thread::Builder::new()
                    .name("must-plan".into())
                    .spawn(move || coordinator::run(sampler, batches, ch, &stop, &shared))
                    .expect("spawning the loader's plan thread"),
            );
        }
        for w in 0..workers {
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
