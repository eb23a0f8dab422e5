//! The epoch plan: which samples each rank loads, in which order, from
//! (seed, epoch, rank, world size) alone. Pure index work: no data is read,
//! so that resuming replays it in milliseconds and decodes nothing.
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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

/// The most ranks an epoch is split between (2^20): planning a segment
/// holds a sampler per rank, so a world size read from a saved state must
/// be bounded.
pub const MAX_WORLD_SIZE: usize = 1 << 20;

/// The most segments (world size changes within one epoch) a saved state
/// may list: resuming replays each of them.
pub const MAX_SEGMENTS: usize = 4096;

/// The most rows of one row group the loader plans (2^20, 256 times the
/// default row group): the shuffle buffer holds an index per row of every
/// open row group, and the counts come from the log, so a row group
/// claiming billions of rows is refused rather than allocated for.
pub const MAX_UNIT_ROWS: u32 = 1 << 20;

/// A small, version-stable generator (SplitMix64): plans must not change when
/// a dependency's generator does.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for a tuple of keys.
    pub fn new(keys: &[u64]) -> Self {
        let mut h = 0x6a09_e667_f3bc_c909u64;
        for k in keys {
            h = mix(h ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        Rng(h)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[a, b)`.
    pub fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.unit()
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of a string (FNV-1a), for keying generators.
pub fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// One (image shard, row group) of the version.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Image shard id.
    pub shard: u64,
    /// Row group index.
    pub row_group: usize,
    /// Rows in the group.
    pub rows: u32,
    /// The shard's source (its only one, or `""` when it has several).
    pub source: String,
    /// Estimated bytes of the group in all requested files (compressed).
    pub est_bytes: u64,
}

/// Rows of one unit, all or some (indices within the row group, ascending).
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    /// Every row.
    All,
    /// These rows.
    Some(Arc<[u32]>),
}

/// A unit with the rows of it that a plan takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Index into the unit list.
    pub unit: u32,
    /// Which rows.
    pub rows: Rows,
}

impl Slice {
    /// Number of rows.
    pub fn len(&self, units: &[Unit]) -> usize {
        match &self.rows {
            Rows::All => units[self.unit as usize].rows as usize,
            Rows::Some(r) => r.len(),
        }
    }

    /// The `i`-th row (within the row group).
    pub fn row(&self, i: usize) -> u32 {
        match &self.rows {
            Rows::All => i as u32,
            Rows::Some(r) => r[i],
        }
    }
}

/// What decides the global order of an epoch.
#[derive(Debug, Clone)]
pub struct Mixing {
    /// Weight per source; `None`: every unit once.
    pub weights: Option<BTreeMap<String, f64>>,
    /// Samples per epoch with weights (default: rows of weighted sources).
    pub epoch_size: Option<u64>,
}

/// The global order of slices of an epoch (step 2 of the module docs).
pub fn global_order(
    units: &[Unit],
    mixing: &Mixing,
    seed: u64,
    epoch: u64,
) -> Result<Vec<Slice>, String> {
    let Some(weights) = &mixing.weights else {
        let mut idx: Vec<u32> = (0..units.len() as u32).collect();
        Rng::new(&[seed, epoch, 1]).shuffle(&mut idx);
        return Ok(idx
            .into_iter()
            .map(|unit| Slice {
                unit,
                rows: Rows::All,
            })
            .collect());
    };
    let mut groups: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (i, u) in units.iter().enumerate() {
        if weights.get(&u.source).is_some_and(|w| *w > 0.0) {
            groups.entry(u.source.as_str()).or_default().push(i as u32);
        }
    }
    for (s, w) in weights {
        if !(w.is_finite() && *w >= 0.0) {
            return Err(format!("weight of source {s:?} must be finite and ≥ 0"));
        }
        if *w > 0.0 && !groups.contains_key(s.as_str()) {
            return Err(format!(
                "source {s:?} has a weight but no single-source shard in this version \
                 (weighted mixing needs shards that each hold one source)"
            ));
        }
    }
    let total_w: f64 = groups.keys().map(|s| weights[*s]).sum();
    let rows_of = |g: &[u32]| -> u64 { g.iter().map(|&u| units[u as usize].rows as u64).sum() };
    let size = mixing
        .epoch_size
        .unwrap_or_else(|| groups.values().map(|g| rows_of(g)).sum());
    let mut keyed: Vec<(f64, usize, Slice)> = Vec::new();
    for (gi, (source, group)) in groups.iter().enumerate() {
        let quota = (weights[*source] / total_w * size as f64).round() as u64;
        if quota == 0 || rows_of(group) == 0 {
            continue;
        }
        let mut taken = 0u64;
        let mut pass = 0u64;
        while taken < quota {
            let mut order = group.clone();
            Rng::new(&[seed, epoch, hash_str(source), pass]).shuffle(&mut order);
            for unit in order {
                let rows = units[unit as usize].rows as u64;
                if rows == 0 {
                    continue;
                }
                let left = quota - taken;
                let slice = if rows <= left {
                    Slice {
                        unit,
                        rows: Rows::All,
                    }
                } else {
                    let mut r: Vec<u32> = (0..rows as u32).collect();
                    Rng::new(&[seed, epoch, hash_str(source), pass, unit as u64, 7])
                        .shuffle(&mut r);
                    r.truncate(left as usize);
                    r.sort_unstable();
                    Slice {
                        unit,
                        rows: Rows::Some(r.into()),
                    }
                };
                let n = slice.len(units) as u64;
                keyed.push(((taken as f64 + n as f64 / 2.0) / quota as f64, gi, slice));
                taken += n;
                if taken >= quota {
                    break;
                }
            }
            pass += 1;
        }
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    Ok(keyed.into_iter().map(|(_, _, s)| s).collect())
}

/// Splits slices between `world` ranks (step 3 of the module docs): each
/// slice goes to the rank holding the fewest samples, the lowest on ties
/// (a heap: O(slices × log world)).
pub fn split(slices: &[Slice], units: &[Unit], world: usize) -> Vec<Vec<Slice>> {
    let mut out = vec![Vec::new(); world];
    let mut held: BinaryHeap<Reverse<(usize, usize)>> =
        (0..world).map(|r| Reverse((0, r))).collect();
    for s in slices {
        let Some(Reverse((n, r))) = held.pop() else {
            break;
        };
        held.push(Reverse((n + s.len(units), r)));
        out[r].push(s.clone());
    }
    out
}

/// The most ranks, summed over a state's segments, that a resume replays:
/// one segment of the largest world size and small ones around it.
pub const MAX_RESUMED_RANKS: u64 = MAX_WORLD_SIZE as u64 + MAX_SEGMENTS as u64;

/// Checks the segments of a saved state before any of them is planned:
/// every world size is between 1 and [`MAX_WORLD_SIZE`], there are at
/// most [`MAX_SEGMENTS`] of them, and their world sizes add up to at most
/// [`MAX_RESUMED_RANKS`]. (Batches are checked against each segment's plan
/// by [`rank_plan`].) The error names the field.
pub fn check_segments(past: &[Segment]) -> Result<(), String> {
    if past.len() > MAX_SEGMENTS {
        return Err(format!(
            "the state lists {} segments (world size changes in one epoch); at most {MAX_SEGMENTS} are resumed",
            past.len()
        ));
    }
    for (i, s) in past.iter().enumerate() {
        if s.world_size == 0 || s.world_size > MAX_WORLD_SIZE {
            return Err(format!(
                "the state's segments[{i}].world_size is {}: it must be between 1 and {MAX_WORLD_SIZE}",
                s.world_size
            ));
        }
    }
    // Resuming replays every rank of every segment: bounded work.
    let ranks: u64 = past.iter().map(|s| s.world_size as u64).sum();
    if ranks > MAX_RESUMED_RANKS {
        return Err(format!(
            "the state's segments add up to {ranks} ranks; at most {MAX_RESUMED_RANKS} are replayed on resume"
        ));
    }
    Ok(())
}

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

/// Options that shape the plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Samples per batch.
    pub batch_size: usize,
    /// Open slices per rank.
    pub shuffle_row_groups: usize,
    /// Pad (true) or drop (false) to equal batches per rank.
    pub pad: bool,
    /// Source weights.
    pub mixing: Mixing,
    /// Seed.
    pub seed: u64,
    /// Epoch.
    pub epoch: u64,
}

/// One world size's stretch of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    /// Ranks in this stretch.
    pub world_size: usize,
    /// Batches every rank yielded in it.
    pub batches: u64,
}

/// A rank's part of the current segment.
#[derive(Debug)]
pub struct RankPlan {
    /// The rank's sampler, already past the batches done.
    pub sampler: Sampler,
    /// Batches every rank yields in the segment.
    pub batches: u64,
    /// Batches already done in the segment.
    pub done: u64,
}

/// The samplers of one segment's ranks and the batches every rank yields
/// in it; `done` (batches a state says were yielded) must fit.
fn segment(
    order: &[Slice],
    units: &[Unit],
    world: usize,
    seg: usize,
    o: &PlanOptions,
    done: u64,
) -> Result<(Vec<Sampler>, u64), String> {
    let samplers: Vec<Sampler> = split(order, units, world)
        .into_iter()
        .enumerate()
        .map(|(r, slices)| {
            let rng = Rng::new(&[o.seed, o.epoch, 2, seg as u64, r as u64]);
            Sampler::new(slices, units, o.shuffle_row_groups, rng)
        })
        .collect();
    let counts = samplers.iter().map(Sampler::total);
    let b = o.batch_size.max(1);
    let per_rank = if o.pad {
        counts.max().map_or(0, |m| m.div_ceil(b))
    } else {
        counts.min().map_or(0, |m| m / b)
    } as u64;
    if done > per_rank {
        return Err(format!(
            "the state's segments[{seg}].batches is {done}, but that segment has {per_rank} batches per rank (world size {world})"
        ));
    }
    Ok((samplers, per_rank))
}

/// The plan of `rank` among `world` ranks after `past` segments (the last
/// one continues when its world size is `world`).
pub fn rank_plan(
    units: &[Unit],
    o: &PlanOptions,
    past: &[Segment],
    rank: usize,
    world: usize,
) -> Result<RankPlan, String> {
    if world == 0 || rank >= world {
        return Err(format!("rank {rank} is not in a world of {world}"));
    }
    if world > MAX_WORLD_SIZE {
        return Err(format!(
            "world size {world} is more than the {MAX_WORLD_SIZE} ranks an epoch is split between"
        ));
    }
    check_segments(past)?;
    if let Some(u) = units.iter().find(|u| u.rows > MAX_UNIT_ROWS) {
        return Err(format!(
            "image shard {} row group {}: the log says {} rows, more than the {MAX_UNIT_ROWS} rows of a row group the loader plans (run `must-ds validate`)",
            u.shard, u.row_group, u.rows
        ));
    }
    let mut order = global_order(units, &o.mixing, o.seed, o.epoch)?;
    let (closed, current) = match past.last() {
        Some(l) if l.world_size == world => (&past[..past.len() - 1], l.batches),
        _ => (past, 0),
    };
    for (seg, s) in closed.iter().enumerate() {
        let (mut all, _) = segment(&order, units, s.world_size, seg, o, s.batches)?;
        // s.batches ≤ the segment's batches (checked by `segment`): the
        // product is at most the rows of the epoch plus a batch.
        let rem: Vec<Vec<Slice>> = all
            .iter_mut()
            .map(|x| {
                x.skip(s.batches.saturating_mul(o.batch_size as u64));
                x.remaining()
            })
            .collect();
        // Merge rank by rank: the first remaining slice of every rank, then the second...
        let longest = rem.iter().map(Vec::len).max().unwrap_or(0);
        order = (0..longest)
            .flat_map(|i| rem.iter().filter_map(move |r| r.get(i).cloned()))
            .collect();
    }
    let (all, per_rank) = segment(&order, units, world, closed.len(), o, current)?;
    let mut sampler = all
        .into_iter()
        .nth(rank)
        .ok_or_else(|| format!("rank {rank} is not in a world of {world}"))?;
    sampler.skip(current.saturating_mul(o.batch_size as u64));
    Ok(RankPlan {
        sampler,
        batches: per_rank,
        done: current,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn units(n: usize, rows: u32, sources: &[&str]) -> Vec<Unit> {
        (0..n)
            .map(|i| Unit {
                shard: i as u64 / 2,
                row_group: i % 2,
                rows: rows - (i % 3 == 0) as u32 * 3,
                source: sources[i % sources.len()].to_owned(),
                est_bytes: 1000,
            })
            .collect()
    }

    fn opts(mixing: Mixing, pad: bool) -> PlanOptions {
        PlanOptions {
            batch_size: 8,
            shuffle_row_groups: 3,
            pad,
            mixing,
            seed: 5,
            epoch: 1,
        }
    }

    fn drain(p: &mut RankPlan, units: &[Unit], batches: u64, b: usize) -> Vec<(u64, u32)> {
        let mut out = vec![];
        for _ in 0..batches * b as u64 {
            if let Some(d) = p.sampler.draw() {
                let u = &units[p.sampler.slices()[d.slice].unit as usize];
                out.push((u.shard * 1000 + u.row_group as u64, d.row));
            }
        }
        out
    }

    #[test]
    fn world_size_changes_neither_repeat_nor_lose_samples() {
        let u = units(23, 20, &["a"]);
        let o = opts(
            Mixing {
                weights: None,
                epoch_size: None,
            },
            true,
        );
        let total: usize = u.iter().map(|x| x.rows as usize).sum();
        let mut seen = vec![];
        // 3 batches on 2 ranks, then 2 on 3 ranks, then the rest on 1.
        for r in 0..2 {
            let mut p = rank_plan(&u, &o, &[], r, 2).unwrap();
            seen.extend(drain(&mut p, &u, 3, 8));
        }
        let past = [Segment {
            world_size: 2,
            batches: 3,
        }];
        for r in 0..3 {
            let mut p = rank_plan(&u, &o, &past, r, 3).unwrap();
            seen.extend(drain(&mut p, &u, 2, 8));
        }
        let past = [
            past[0],
            Segment {
                world_size: 3,
                batches: 2,
            },
        ];
        let mut p = rank_plan(&u, &o, &past, 0, 1).unwrap();
        let b = p.batches;
        seen.extend(drain(&mut p, &u, b, 8));
        let set: BTreeSet<_> = seen.iter().collect();
        assert_eq!(set.len(), seen.len(), "no sample twice");
        assert_eq!(seen.len(), total, "no sample lost");
    }

    #[test]
    fn weights_set_the_share_of_each_source() {
        let mut u = units(40, 20, &["big"]);
        u.truncate(36);
        for x in u.iter_mut().skip(30) {
            x.source = "small".into();
        }
        let mut w = BTreeMap::new();
        w.insert("big".to_owned(), 1.0);
        w.insert("small".to_owned(), 1.0);
        let m = Mixing {
            weights: Some(w),
            epoch_size: Some(600),
        };
        let order = global_order(&u, &m, 1, 0).unwrap();
        let count = |s: &str, o: &[Slice]| -> usize {
            o.iter()
                .filter(|x| u[x.unit as usize].source == s)
                .map(|x| x.len(&u))
                .sum()
        };
        assert_eq!(count("big", &order), 300);
        assert_eq!(count("small", &order), 300);
        // Both sources appear in every fifth of the order.
        let fifth = order.len() / 5;
        for c in order.chunks(fifth) {
            assert!(count("big", c) > 0 && count("small", c) > 0);
        }
        assert!(global_order(
            &u,
            &Mixing {
                weights: Some([("nope".to_owned(), 1.0)].into()),
                epoch_size: None
            },
            1,
            0
        )
        .is_err());
    }

    #[test]
    fn ranks_get_equal_batches_and_plans_are_deterministic() {
        let u = units(17, 30, &["a"]);
        for pad in [false, true] {
            let o = opts(
                Mixing {
                    weights: None,
                    epoch_size: None,
                },
                pad,
            );
            let plans: Vec<_> = (0..4)
                .map(|r| rank_plan(&u, &o, &[], r, 4).unwrap())
                .collect();
            assert!(plans
                .iter()
                .all(|p| p.batches == plans[0].batches && p.batches > 0));
            let a = drain(&mut rank_plan(&u, &o, &[], 1, 4).unwrap(), &u, 3, 8);
            let b = drain(&mut rank_plan(&u, &o, &[], 1, 4).unwrap(), &u, 3, 8);
            assert_eq!(a, b);
            let o2 = PlanOptions {
                epoch: 2,
                ..o.clone()
            };
            assert_ne!(
                a,
                drain(&mut rank_plan(&u, &o2, &[], 1, 4).unwrap(), &u, 3, 8)
            );
        }
    }
}

/// The heap in [`split`] gives each slice to the same rank as a scan for the
/// rank holding the fewest samples (lowest on ties) does.
#[cfg(test)]
mod split_tests {
    use super::*;

    #[test]
    fn split_matches_the_fewest_samples_rule() {
        let mut rng = Rng::new(&[3]);
        let units: Vec<Unit> = (0..200)
            .map(|i| Unit {
                shard: i,
                row_group: 0,
                rows: rng.below(40) as u32,
                source: String::new(),
                est_bytes: 0,
            })
            .collect();
        let slices: Vec<Slice> = (0..200)
            .map(|u| Slice {
                unit: u,
                rows: Rows::All,
            })
            .collect();
        for world in [1, 2, 3, 7, 64, 500] {
            let mut want = vec![Vec::new(); world];
            let mut held = vec![0usize; world];
            for s in &slices {
                let r = (0..world).min_by_key(|&r| (held[r], r)).unwrap();
                held[r] += s.len(&units);
                want[r].push(s.clone());
            }
            assert_eq!(split(&slices, &units, world), want, "world {world}");
        }
        assert!(split(&slices, &units, 0).is_empty());
    }

    #[test]
    fn hostile_segments_are_refused_by_field() {
        let seg = |world_size, batches| Segment {
            world_size,
            batches,
        };
        assert!(check_segments(&[seg(1, 5), seg(MAX_WORLD_SIZE, 0)]).is_ok());
        for (past, field) in [
            (vec![seg(0, 0)], "segments[0].world_size is 0"),
            (
                vec![seg(2, 1), seg(usize::MAX, 0)],
                "segments[1].world_size",
            ),
            (vec![seg(MAX_WORLD_SIZE + 1, 0)], "segments[0].world_size"),
            (vec![seg(1, 0); MAX_SEGMENTS + 1], "segments"),
        ] {
            let e = check_segments(&past).unwrap_err();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn row_groups_claiming_billions_of_rows_are_refused() {
        let o = PlanOptions {
            batch_size: 4,
            shuffle_row_groups: 2,
            pad: true,
            mixing: Mixing {
                weights: None,
                epoch_size: None,
            },
            seed: 1,
            epoch: 0,
        };
        let unit = |shard, rows| Unit {
            shard,
            row_group: 0,
            rows,
            source: "a".into(),
            est_bytes: 0,
        };
        let units = [unit(0, 10), unit(7, u32::MAX)];
        let e = rank_plan(&units, &o, &[], 0, 1).unwrap_err();
        assert!(e.contains("image shard 7 row group 0"), "{e}");
        assert!(rank_plan(&units[..1], &o, &[], 0, 1).is_ok());
    }
}

/// Issue 14, item 2: the unit order and the shuffle buffer each depend on
/// the seed (and the epoch), not only on each other.
#[cfg(test)]
mod seed_tests {
    use super::*;

    fn units(n: usize, rows: u32) -> Vec<Unit> {
        (0..n)
            .map(|i| Unit {
                shard: i as u64,
                row_group: 0,
                rows,
                source: "a".into(),
                est_bytes: 1000,
            })
            .collect()
    }

    fn plain() -> Mixing {
        Mixing {
            weights: None,
            epoch_size: None,
        }
    }

    fn order(u: &[Unit], m: &Mixing, seed: u64, epoch: u64) -> Vec<(u32, usize)> {
        global_order(u, m, seed, epoch)
            .unwrap()
            .iter()
            .map(|s| (s.unit, s.len(u)))
            .collect()
    }

    fn opts(seed: u64, epoch: u64, k: usize) -> PlanOptions {
        PlanOptions {
            batch_size: 4,
            shuffle_row_groups: k,
            pad: true,
            mixing: plain(),
            seed,
            epoch,
        }
    }

    /// Every draw of rank 0 as (unit, row).
    fn draws(u: &[Unit], o: &PlanOptions) -> Vec<(u32, u32)> {
        let mut p = rank_plan(u, o, &[], 0, 1).unwrap();
        let mut out = vec![];
        while let Some(d) = p.sampler.draw() {
            out.push((p.sampler.slices()[d.slice].unit, d.row));
        }
        out
    }

    #[test]
    fn the_unit_order_depends_on_the_seed() {
        let u = units(24, 5);
        let m = plain();
        assert_eq!(order(&u, &m, 1, 0), order(&u, &m, 1, 0), "deterministic");
        for (a, b) in [(1, 2), (2, 3), (0, 1)] {
            assert_ne!(
                order(&u, &m, a, 0),
                order(&u, &m, b, 0),
                "seeds {a} and {b} give the same unit order: the seed is ignored"
            );
        }
        assert_ne!(order(&u, &m, 1, 0), order(&u, &m, 1, 1), "epoch ignored");
        // With weights too (the per-source passes and the cut of the last unit).
        let w = Mixing {
            weights: Some([("a".to_owned(), 1.0)].into()),
            epoch_size: Some(57),
        };
        assert_ne!(
            order(&u, &w, 1, 0),
            order(&u, &w, 2, 0),
            "weighted: the seed is ignored"
        );
        // Through the plan: with one open unit at a time (k = 1), the units are
        // visited in plan order.
        let visited = |seed| {
            let mut v: Vec<u32> = draws(&u, &opts(seed, 0, 1))
                .into_iter()
                .map(|d| d.0)
                .collect();
            v.dedup();
            v
        };
        assert_eq!(visited(1).len(), 24);
        assert_ne!(visited(1), visited(2), "rank plan: the seed is ignored");
    }

    #[test]
    fn the_shuffle_buffer_depends_on_the_seed() {
        // One unit: the global order is the same for every seed, so any
        // difference comes from the shuffle buffer's generator.
        let one = units(1, 64);
        let rows = |d: Vec<(u32, u32)>| d.into_iter().map(|x| x.1).collect::<Vec<_>>();
        let a = rows(draws(&one, &opts(1, 0, 2)));
        assert_eq!(a.len(), 64);
        assert_ne!(a, (0..64).collect::<Vec<_>>(), "rows are not shuffled");
        assert_eq!(a, rows(draws(&one, &opts(1, 0, 2))), "deterministic");
        for (s, t) in [(1, 2), (2, 3), (0, 1)] {
            assert_ne!(
                rows(draws(&one, &opts(s, 0, 2))),
                rows(draws(&one, &opts(t, 0, 2))),
                "seeds {s} and {t} draw the same rows: the shuffle buffer ignores the seed"
            );
        }
        assert_ne!(
            a,
            rows(draws(&one, &opts(1, 1, 2))),
            "the shuffle buffer ignores the epoch"
        );
        // The sampler itself: same slices, other generators, other orders; and
        // with K open slices, draws interleave them.
        let u = units(4, 16);
        let slices: Vec<Slice> = (0..4)
            .map(|i| Slice {
                unit: i,
                rows: Rows::All,
            })
            .collect();
        let run = |seed: u64| {
            let mut s = Sampler::new(slices.clone(), &u, 2, Rng::new(&[seed]));
            std::iter::from_fn(move || s.draw().map(|d| (d.slice, d.row))).collect::<Vec<_>>()
        };
        assert_eq!(run(1).len(), 64);
        assert_ne!(run(1), run(2));
        let first: Vec<usize> = run(1)[..16].iter().map(|d| d.0).collect();
        assert!(
            first.contains(&0) && first.contains(&1),
            "two open slices are drawn from together: {first:?}"
        );
    }
}
