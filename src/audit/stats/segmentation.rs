//! Segmentation statistics: pixels per class, `ignore_index`, the
//! teacher's confidence, and map sizes.

use serde::Serialize;

use super::{ClassCount, Counts, MapSizes, SizeCount};
use crate::audit::{Summary, UnitHistogram};
use crate::codec::SegMap;
use crate::format::{MaskDtype, TaskDef};

/// Segmentation statistics.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentationStats {
    /// Rows with a label.
    pub labeled: u64,
    /// Pixels in all maps.
    pub pixels: u64,
    /// Pixel frequency per class, most frequent first.
    pub classes: Vec<ClassCount>,
    /// Share of pixels equal to `ignore_index`.
    pub ignore_fraction: f64,
    /// Confidence (0..1) where the teacher wrote it.
    pub confidence: Option<Summary>,
    /// Confidence in ten bins.
    pub confidence_histogram: UnitHistogram,
    /// The most common map sizes.
    pub map_sizes: Vec<SizeCount>,
    /// Image width over map width.
    pub image_to_map_ratio: Option<Summary>,
}

/// What [`SegmentationStats`] is computed from, label by label.
pub(super) struct Acc {
    /// The task's.
    dtype: MaskDtype,
    /// The task's.
    ignore_index: u32,
    /// The task's: classes listed.
    num_classes: u32,
    maps: MapSizes,
    classes: Counts,
    ignored: u64,
    /// Pixels per stored confidence level.
    conf_levels: [u64; 256],
    conf_hist: UnitHistogram,
}

/// The exact summary of confidences stored as 256 levels (`round(255 × p)`).
fn levels_summary(levels: &[u64]) -> Option<Summary> {
    let count: u64 = levels.iter().sum();
    if count == 0 {
        return None;
    }
    let value = |i: usize| i as f64 / 255.0;
    let q = |p: f64| {
        let target = ((count - 1) as f64 * p).round() as u64;
        let mut seen = 0;
        for (i, n) in levels.iter().enumerate() {
            seen += n;
            if seen > target {
                return value(i);
            }
        }
        1.0
    };
    let sum: f64 = levels
        .iter()
        .enumerate()
        .map(|(i, n)| value(i) * *n as f64)
        .sum();
    Some(Summary {
        count,
        mean: sum / count as f64,
        min: value(levels.iter().position(|n| *n > 0).unwrap_or(0)),
        p5: q(0.05),
        p25: q(0.25),
        p50: q(0.5),
        p75: q(0.75),
        p95: q(0.95),
        max: value(levels.iter().rposition(|n| *n > 0).unwrap_or(0)),
        approximate_quantiles: false,
    })
}

impl Acc {
    /// An empty accumulator for a task with these fields.
    pub(super) fn new(dtype: MaskDtype, ignore_index: u32, num_classes: u32) -> Self {
        Self {
            dtype,
            ignore_index,
            num_classes,
            maps: MapSizes::default(),
            classes: Counts::default(),
            ignored: 0,
            conf_levels: [0; 256],
            conf_hist: UnitHistogram::default(),
        }
    }

    /// Adds the map of one image `image_width` wide (0 when not known).
    pub(super) fn add(&mut self, m: &SegMap, image_width: u32) {
        self.maps.add(m.width, m.height, image_width);
        let mut hist = vec![0u64; self.dtype.max() as usize + 1];
        for v in m.values(self.dtype.size()) {
            hist[v as usize] += 1;
        }
        for (v, n) in hist.into_iter().enumerate().filter(|(_, n)| *n > 0) {
            if v as u32 == self.ignore_index {
                self.ignored += n;
            } else {
                self.classes.add(v as u32, n);
            }
        }
        if let Some(conf) = &m.confidence {
            let mut h = [0u64; 256];
            for &c in conf {
                h[c as usize] += 1;
            }
            for (c, n) in h.iter().enumerate() {
                self.conf_levels[c] += n;
                self.conf_hist.bins[((c as f64 / 255.0 * 10.0) as usize).min(9)] += n;
            }
        }
    }

    /// The statistics of `labeled` rows of `task`.
    pub(super) fn finish(self, labeled: u64, task: &TaskDef) -> SegmentationStats {
        let pixels = self.maps.pixels;
        SegmentationStats {
            labeled,
            pixels,
            ignore_fraction: self.ignored as f64 / pixels.max(1) as f64,
            classes: {
                // Shares of all pixels, ignored ones included.
                let mut v = self.classes.top(task, self.num_classes as usize);
                for c in &mut v {
                    c.fraction = c.count as f64 / pixels.max(1) as f64;
                }
                v
            },
            confidence: levels_summary(&self.conf_levels),
            confidence_histogram: self.conf_hist,
            map_sizes: self.maps.top(),
            image_to_map_ratio: self.maps.ratio.summary(),
        }
    }
}
