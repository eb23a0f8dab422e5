//! Detection statistics: boxes per image, scores, box sizes and shapes,
//! classes, and boxes a teacher should not have written.

use serde::Serialize;

use super::{ClassCount, Counts};
use crate::audit::{Dist, Summary, UnitHistogram};
use crate::codec::Detections;
use crate::format::TaskDef;

/// Detection statistics.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionStats {
    /// Rows with a label.
    pub labeled: u64,
    /// Boxes in all.
    pub boxes: u64,
    /// Boxes per labeled image.
    pub boxes_per_image: Option<Summary>,
    /// Labeled images with no box.
    pub zero_box_images: u64,
    /// Scores.
    pub scores: Option<Summary>,
    /// Scores in ten bins.
    pub score_histogram: UnitHistogram,
    /// The task's threshold.
    pub min_score_written: f32,
    /// Boxes scored below it (a teacher that ignored it).
    pub below_min_score: u64,
    /// Box widths in pixels.
    pub width_px: Option<Summary>,
    /// Box heights in pixels.
    pub height_px: Option<Summary>,
    /// Box area over image area.
    pub relative_area: Option<Summary>,
    /// Width over height.
    pub aspect: Option<Summary>,
    /// The 20 most frequent classes.
    pub classes: Vec<ClassCount>,
    /// Boxes reaching outside the image (by more than half a pixel).
    pub outside_image: u64,
}

/// What [`DetectionStats`] is computed from, label by label.
#[derive(Default)]
pub(super) struct Acc {
    /// The task's threshold.
    min_score_written: f32,
    boxes: u64,
    per_image: Dist,
    zero: u64,
    scores: Dist,
    score_hist: UnitHistogram,
    below: u64,
    width: Dist,
    height: Dist,
    area: Dist,
    aspect: Dist,
    classes: Counts,
    outside: u64,
}

impl Acc {
    /// An empty accumulator for a task with this threshold.
    pub(super) fn new(min_score_written: f32) -> Self {
        Self {
            min_score_written,
            ..Default::default()
        }
    }

    /// Adds the boxes of one image of `width` × `height` (0 × 0 when not
    /// known: no relative area, nothing outside).
    pub(super) fn add(&mut self, d: &Detections, width: u32, height: u32) {
        let n = d.boxes.len() as u64;
        self.boxes += n;
        self.per_image.add(n as f64);
        if n == 0 {
            self.zero += 1;
        }
        for ((b, &s), &c) in d.boxes.iter().zip(&d.scores).zip(&d.classes) {
            self.scores.add(s as f64);
            self.score_hist.add(s as f64);
            if s < self.min_score_written {
                self.below += 1;
            }
            let (w, h) = ((b[2] - b[0]) as f64, (b[3] - b[1]) as f64);
            self.width.add(w);
            self.height.add(h);
            if width > 0 && height > 0 {
                self.area.add(w * h / (width as f64 * height as f64));
                let tol = 0.5;
                if b[0] < -tol
                    || b[1] < -tol
                    || b[2] > width as f32 + tol
                    || b[3] > height as f32 + tol
                {
                    self.outside += 1;
                }
            }
            if h > 0.0 {
                self.aspect.add(w / h);
            }
            self.classes.add(c, 1);
        }
    }

    /// The statistics of `labeled` rows of `task`.
    pub(super) fn finish(self, labeled: u64, task: &TaskDef) -> DetectionStats {
        DetectionStats {
            labeled,
            boxes: self.boxes,
            boxes_per_image: self.per_image.summary(),
            zero_box_images: self.zero,
            scores: self.scores.summary(),
            score_histogram: self.score_hist,
            min_score_written: self.min_score_written,
            below_min_score: self.below,
            width_px: self.width.summary(),
            height_px: self.height.summary(),
            relative_area: self.area.summary(),
            aspect: self.aspect.summary(),
            classes: self.classes.top(task, 20),
            outside_image: self.outside,
        }
    }
}
