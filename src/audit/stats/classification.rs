//! Classification statistics: top-1 classes and probability, entropy and
//! the probability mass a top-k label keeps.

use serde::Serialize;

use super::{ClassCount, Counts};
use crate::audit::{Dist, Summary, UnitHistogram};
use crate::codec::ClassLabel;
use crate::format::TaskDef;

/// Classification statistics.
#[derive(Debug, Clone, Serialize)]
pub struct ClassificationStats {
    /// Rows with a label.
    pub labeled: u64,
    /// The 20 most frequent top-1 classes.
    pub top1_classes: Vec<ClassCount>,
    /// Distinct top-1 classes.
    pub distinct_top1: u64,
    /// Rows whose top-1 class is outside those 20.
    pub long_tail_rows: u64,
    /// Top-1 probability.
    pub top1_prob: Option<Summary>,
    /// Top-1 probability in ten bins.
    pub top1_prob_histogram: UnitHistogram,
    /// Entropy in bits of the stored probabilities (for top-k, the missing
    /// mass counts as one more outcome: a lower bound).
    pub entropy_bits: Option<Summary>,
    /// Probability mass the stored top-k keeps (1 for dense).
    pub kept_mass: Option<Summary>,
}

/// What [`ClassificationStats`] is computed from, label by label.
#[derive(Default)]
pub(super) struct Acc {
    /// The task's: entropy is only meaningful for a distribution.
    multi_label: bool,
    top1: Counts,
    top1_prob: Dist,
    top1_hist: UnitHistogram,
    entropy: Dist,
    kept: Dist,
}

fn entropy_bits(probs: &[f32], rest: f64) -> f64 {
    let h: f64 = probs
        .iter()
        .filter(|p| **p > 0.0)
        .map(|&p| -(p as f64) * (p as f64).log2())
        .sum();
    h + if rest > 1e-9 {
        -rest * rest.log2()
    } else {
        0.0
    }
}

impl Acc {
    /// An empty accumulator for a task with this `multi_label`.
    pub(super) fn new(multi_label: bool) -> Self {
        Self {
            multi_label,
            ..Default::default()
        }
    }

    /// Adds one label.
    pub(super) fn add(&mut self, c: &ClassLabel) {
        let (top1, p1, probs): (Option<u32>, f32, &[f32]) = match c {
            ClassLabel::TopK { classes, probs } => (
                classes.first().copied(),
                probs.first().copied().unwrap_or(0.0),
                probs,
            ),
            ClassLabel::Dense(p) => {
                let best = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1));
                (
                    best.map(|(i, _)| i as u32),
                    best.map_or(0.0, |(_, v)| *v),
                    p,
                )
            }
        };
        if let Some(t) = top1 {
            self.top1.add(t, 1);
        }
        self.top1_prob.add(p1 as f64);
        self.top1_hist.add(p1 as f64);
        let kept: f64 = probs.iter().map(|p| *p as f64).sum();
        self.kept.add(match c {
            ClassLabel::Dense(_) => 1.0,
            ClassLabel::TopK { .. } => kept,
        });
        if !self.multi_label {
            let rest = match c {
                ClassLabel::TopK { .. } => (1.0 - kept).max(0.0),
                ClassLabel::Dense(_) => 0.0,
            };
            self.entropy.add(entropy_bits(probs, rest));
        }
    }

    /// The statistics of `labeled` rows of `task`.
    pub(super) fn finish(self, labeled: u64, task: &TaskDef) -> ClassificationStats {
        let top = self.top1.top(task, 20);
        let shown: u64 = top.iter().map(|c| c.count).sum();
        ClassificationStats {
            labeled,
            long_tail_rows: self.top1.total() - shown,
            distinct_top1: self.top1.0.len() as u64,
            top1_classes: top,
            top1_prob: self.top1_prob.summary(),
            top1_prob_histogram: self.top1_hist,
            entropy_bits: self.entropy.summary(),
            kept_mass: self.kept.summary(),
        }
    }
}
