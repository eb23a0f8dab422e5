//! The epoch plan: which samples each rank loads, in which order, from
//! (seed, epoch, rank, world size) alone. Pure index work: no data is read,
//! so that resuming replays it in milliseconds and decodes nothing.
//!
//! The rules, steps 1 to 5, are in the loader's docs ("The plan"):
//! `src/loader/mod.rs`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

mod rng;
mod sampler;
#[cfg(test)]
mod tests;

pub use rng::{hash_str, Rng};
pub use sampler::Sampler;

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
