//! Distributions for the statistics: [`Dist`] (count, mean, extremes and
//! quantiles), its [`Summary`], and [`UnitHistogram`] for values in [0, 1].

use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Values kept for quantiles before a uniform reservoir takes over.
const RESERVOIR: usize = 1 << 20;

/// A distribution: exact count, mean, min and max; quantiles exact up to
/// 2^20 values, then from a uniform reservoir of that many.
#[derive(Debug, Clone)]
pub struct Dist {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    sample: Vec<f32>,
    rng: rand::rngs::StdRng,
}

impl Default for Dist {
    fn default() -> Self {
        Self {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sample: vec![],
            rng: rand::rngs::StdRng::seed_from_u64(7),
        }
    }
}

/// What a [`Dist`] prints.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Number of values.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// 5th percentile.
    pub p5: f64,
    /// 25th percentile.
    pub p25: f64,
    /// Median.
    pub p50: f64,
    /// 75th percentile.
    pub p75: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Largest value.
    pub max: f64,
    /// Whether the quantiles come from a reservoir sample.
    pub approximate_quantiles: bool,
}

impl Dist {
    /// Adds a finite value (others are ignored).
    pub fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if self.sample.len() < RESERVOIR {
            self.sample.push(v as f32);
        } else {
            let j = self.rng.random_range(0..self.count);
            if (j as usize) < RESERVOIR {
                self.sample[j as usize] = v as f32;
            }
        }
    }

    /// The summary (`None` without values).
    pub fn summary(&self) -> Option<Summary> {
        if self.count == 0 {
            return None;
        }
        let mut s = self.sample.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize] as f64;
        Some(Summary {
            count: self.count,
            mean: self.sum / self.count as f64,
            min: self.min,
            p5: q(0.05),
            p25: q(0.25),
            p50: q(0.5),
            p75: q(0.75),
            p95: q(0.95),
            max: self.max,
            approximate_quantiles: self.count as usize > RESERVOIR,
        })
    }
}

/// Counts of values in [0, 1] in ten equal bins.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct UnitHistogram {
    /// Bin i counts values in [i/10, (i+1)/10) (the last bin includes 1).
    pub bins: [u64; 10],
}

impl UnitHistogram {
    /// Adds a value in [0, 1] (others clamp).
    pub fn add(&mut self, v: f64) {
        if v.is_finite() {
            // Values come from f32 (0.9f32 is 0.8999…): a nudge keeps them in their bin.
            self.bins[((v.clamp(0.0, 1.0) * 10.0 + 1e-6) as usize).min(9)] += 1;
        }
    }

    /// A one-line bar chart with a block per bin.
    pub fn sparkline(&self) -> String {
        let max = *self.bins.iter().max().unwrap_or(&0);
        let blocks = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        self.bins
            .iter()
            .map(|&b| {
                if max == 0 {
                    ' '
                } else {
                    blocks[((b as f64 / max as f64) * 8.0).round() as usize]
                }
            })
            .collect()
    }
}
