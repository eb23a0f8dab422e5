//! A rank's shuffle buffer (step 4 of the plan).

use std::collections::BTreeMap;

use super::{Rng, Rows, Slice, Unit};

/// One draw of a rank's sample order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    /// Index of the slice in the rank's list.
    pub slice: usize,
    /// Row within the row group.
    pub row: u32,
    /// This was the slice's last open row.
    pub closes: bool,
}

/// A rank's sample order: the shuffle buffer over its slices (step 4).
#[derive(Debug, Clone)]
pub struct Sampler {
    slices: Vec<Slice>,
    lens: Vec<usize>,
    next: usize,
    /// (slice, index of the row within the slice)
    pool: Vec<(u32, u32)>,
    left: Vec<u32>,
    open: usize,
    k: usize,
    rng: Rng,
}

impl Sampler {
    /// A sampler over `slices` with `k` open at most.
    pub fn new(slices: Vec<Slice>, units: &[Unit], k: usize, rng: Rng) -> Self {
        let lens: Vec<usize> = slices.iter().map(|s| s.len(units)).collect();
        let left = lens.iter().map(|&l| l as u32).collect();
        Self {
            slices,
            lens,
            next: 0,
            pool: Vec::new(),
            left,
            open: 0,
            k: k.max(1),
            rng,
        }
    }

    /// Samples in total.
    pub fn total(&self) -> usize {
        self.lens.iter().sum()
    }

    /// The rank's slices.
    pub fn slices(&self) -> &[Slice] {
        &self.slices
    }

    /// The next draw; `None` when every row has been drawn.
    pub fn draw(&mut self) -> Option<Draw> {
        while self.open < self.k && self.next < self.slices.len() {
            let s = self.next;
            self.next += 1;
            if self.lens[s] == 0 {
                continue;
            }
            self.pool
                .extend((0..self.lens[s] as u32).map(|i| (s as u32, i)));
            self.open += 1;
        }
        if self.pool.is_empty() {
            return None;
        }
        let j = self.rng.below(self.pool.len());
        let (s, i) = self.pool.swap_remove(j);
        let s = s as usize;
        self.left[s] -= 1;
        let closes = self.left[s] == 0;
        if closes {
            self.open -= 1;
        }
        Some(Draw {
            slice: s,
            row: self.slices[s].row(i as usize),
            closes,
        })
    }

    /// Draws up to `n` samples without using them (replaying a plan).
    pub fn skip(&mut self, n: u64) {
        for _ in 0..n {
            if self.draw().is_none() {
                break;
            }
        }
    }

    /// Slices with rows still to draw, in the order they will be needed:
    /// open ones (ascending), then unopened ones.
    pub fn pending_slices(&self) -> Vec<usize> {
        (0..self.next)
            .filter(|&s| self.left[s] > 0)
            .chain((self.next..self.slices.len()).filter(|&s| self.lens[s] > 0))
            .collect()
    }

    /// The rows not drawn yet, as slices (step 5).
    pub fn remaining(&self) -> Vec<Slice> {
        let mut open: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for &(s, i) in &self.pool {
            open.entry(s)
                .or_default()
                .push(self.slices[s as usize].row(i as usize));
        }
        let mut out: Vec<Slice> = open
            .into_iter()
            .map(|(s, mut rows)| {
                rows.sort_unstable();
                let slice = &self.slices[s as usize];
                if rows.len() == self.lens[s as usize] {
                    slice.clone()
                } else {
                    Slice {
                        unit: slice.unit,
                        rows: Rows::Some(rows.into()),
                    }
                }
            })
            .collect();
        out.extend(self.slices[self.next..].iter().cloned());
        out
    }
}
