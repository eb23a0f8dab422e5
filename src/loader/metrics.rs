//! Counters of time and volume, summed over the loader's threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Time and volume counters, summed over threads.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(super) fetch_ns: AtomicU64,
    pub(super) fetched_bytes: AtomicU64,
    pub(super) read_ns: AtomicU64,
    pub(super) decode_ns: AtomicU64,
    pub(super) decoded: AtomicU64,
    pub(super) augment_ns: AtomicU64,
    pub(super) collate_ns: AtomicU64,
    pub(super) wait_ns: AtomicU64,
    pub(super) samples: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) padding: AtomicU64,
    pub(super) missing_required: AtomicU64,
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
    /// Adds `d` to the nanosecond counter `c`.
    pub(super) fn add(c: &AtomicU64, d: Duration) {
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
