//! The coordinator stage: the shuffle buffer. It draws the rank's samples
//! in plan order from the open row groups, holds each group until its last
//! row is drawn, and sends one job per batch to the workers, as many ahead
//! as the consumer's tokens allow.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel as cb;

use super::corrupt::{CorruptPolicy, CorruptReport};
use super::group::{Fetched, Open, OpenGroup};
use super::plan::Sampler;
use super::shared::Shared;

/// A slot of a batch job.
pub(super) enum Slot {
    /// Row `row` (within the row group) of a fetched group.
    Sample(Arc<OpenGroup>, usize),
    /// Nothing to load: padding.
    Empty,
    /// A group that could not be fetched, under the `Fail` policy.
    Bad(CorruptReport),
}

/// One batch to build.
pub(super) struct Job {
    /// Its index in the epoch.
    pub(super) index: u64,
    /// One per sample of the batch.
    pub(super) slots: Vec<Slot>,
}

/// The coordinator's channels.
pub(super) struct Channels {
    /// One token per batch the consumer may have prepared ahead.
    pub(super) tokens: cb::Receiver<()>,
    /// Fetched groups, in the sampler's order.
    pub(super) fetched: tokio::sync::mpsc::UnboundedReceiver<Fetched>,
    /// Jobs for the workers.
    pub(super) jobs: cb::Sender<Job>,
}

/// Runs the coordinator for batches `batches` of the epoch, until the end,
/// a closed channel or `stop`.
pub(super) fn run(
    mut sampler: Sampler,
    batches: std::ops::Range<u64>,
    ch: Channels,
    stop: &AtomicBool,
    shared: &Shared,
) {
    let Channels {
        tokens,
        fetched: mut fetch_rx,
        jobs,
    } = ch;
    let mut open: HashMap<usize, Open> = HashMap::new();
    let mut reported: HashSet<usize> = HashSet::new();
    for index in batches {
        if tokens.recv().is_err() || stop.load(Ordering::Relaxed) {
            return;
        }
        let mut slots = Vec::with_capacity(shared.cfg.batch_size);
        for _ in 0..shared.cfg.batch_size {
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
                Err(rep) => match shared.cfg.corrupt {
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
        if jobs.send(Job { index, slots }).is_err() {
            return;
        }
    }
}
