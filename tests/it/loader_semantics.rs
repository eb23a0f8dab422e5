//! What the loader promises about seeds and epochs, balancing ranks and saved
//! states (issue 14, items 2, 3, 9; item 10 is in loader_mixing.rs),
//! through the public builder only: ids, sources, padding, pixels and the
//! `present` flags, never the layout of the label arrays.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use must_ds::loader::{Balance, Batch, Images, Loader, LoaderBuilder, LoaderState};
use must_ds::Error;

use crate::util;

const B: usize = 8;
const W: u32 = 48;
const H: u32 = 40;

/// The demo dataset with `images` images: with 140, image shards of 96 and
/// 44 rows in row groups of 32, 32, 32 | 32, 12.
fn demo(dir: &Path, images: usize) -> String {
    let root = dir.join("demo");
    must_ds::demo::build(&root, images).unwrap();
    root.to_str().unwrap().to_owned()
}

fn builder(root: &str) -> LoaderBuilder {
    util::with_demo_tasks(LoaderBuilder::open(root, None))
        .batch_size(B)
        .output_size(W, H)
        .seed(11)
        .workers(2)
}

pub(crate) fn all(l: impl Iterator<Item = must_ds::Result<Batch>>) -> Vec<Batch> {
    l.map(|b| b.unwrap()).collect()
}

fn pixels(b: &Batch) -> &[u8] {
    match &b.images {
        Images::U8(v) => v,
        _ => panic!("the loader's default output is u8 images"),
    }
}

/// Sample `i`'s pixels (3×H×W).
fn sample(b: &Batch, i: usize) -> &[u8] {
    let n = 3 * b.width as usize * b.height as usize;
    &pixels(b)[i * n..(i + 1) * n]
}

use crate::util::real_ids as ids;

/// What a batch is, for comparisons: ids, padding flags and pixels.
fn key(b: &Batch) -> (Vec<String>, Vec<bool>, Vec<u8>) {
    (b.image_ids.clone(), b.padding.clone(), pixels(b).to_vec())
}

fn keys(batches: &[Batch]) -> Vec<(Vec<String>, Vec<bool>, Vec<u8>)> {
    batches.iter().map(key).collect()
}

/// Takes `n` batches; panics when the epoch ends first.
pub(crate) fn take(l: &mut Loader, n: usize) -> Vec<Batch> {
    (0..n)
        .map(|k| {
            l.next()
                .unwrap_or_else(|| panic!("the epoch ended after {k} of {n} batches"))
                .unwrap()
        })
        .collect()
}

// ---------------------------------------------------------------- item 2

/// The augmentation is drawn per epoch: the same image gets other pixels in
/// epoch 1 than in epoch 0 (and the same ones when epoch 0 is run again).
#[test]
fn the_same_image_gets_other_pixels_in_another_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let root = demo(dir.path(), 70);
    let by_id = |epoch: u64, seed: u64| -> BTreeMap<String, Vec<u8>> {
        let batches = all(builder(&root)
            .seed(seed)
            .epoch(epoch)
            .balance(Balance::Pad)
            .build()
            .unwrap());
        let mut m = BTreeMap::new();
        for b in &batches {
            for i in 0..b.batch_size {
                if !b.padding[i] {
                    m.insert(b.image_ids[i].clone(), sample(b, i).to_vec());
                }
            }
        }
        assert_eq!(m.len(), 70, "every image once");
        m
    };
    let e0 = by_id(0, 11);
    assert_eq!(e0, by_id(0, 11), "the same epoch and seed, the same pixels");
    for (what, other) in [("epoch 1", by_id(1, 11)), ("seed 12", by_id(0, 12))] {
        let same: Vec<&String> = e0.keys().filter(|id| e0[*id] == other[*id]).collect();
        assert!(
            same.len() <= 2,
            "{} of 70 images have the same pixels in epoch 0 and with {what} \
             (the augmentation ignores it): {same:?}",
            same.len()
        );
    }
}

// ---------------------------------------------------------------- item 3

/// 140 demo images on 3 ranks: the row groups (32, 32, 32, 32, 12) go, in
/// plan order, each to the rank holding the fewest samples, which always
/// ends with 32, 44 and 64 samples (in some rank order). So with batches of
/// 6, `Drop` yields floor(32 / 6) = 5 batches per rank and `Pad`
/// ceil(64 / 6) = 11.
#[test]
fn drop_yields_exactly_floor_min_over_b_full_batches_and_pad_pads_only_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = demo(dir.path(), 140);
    const B6: usize = 6;
    let b = |r: usize, balance| builder(&root).batch_size(B6).rank(r, 3).balance(balance);

    let mut dropped = vec![];
    for r in 0..3 {
        let l = b(r, Balance::Drop).build().unwrap();
        assert_eq!(l.batches_per_epoch(), 5, "Drop, rank {r}: floor(32 / 6)");
        let batches = all(l);
        assert_eq!(batches.len(), 5, "Drop, rank {r}");
        for (k, x) in batches.iter().enumerate() {
            assert!(
                x.padding.iter().all(|p| !p) && x.image_ids.iter().all(|i| !i.is_empty()),
                "Drop, rank {r}, batch {k}: a padding slot {:?}",
                x.padding
            );
        }
        dropped.extend(ids(&batches));
    }
    assert_eq!(dropped.len(), 3 * 5 * B6);
    assert_eq!(
        dropped.iter().collect::<BTreeSet<_>>().len(),
        dropped.len(),
        "Drop: a sample on two ranks or twice"
    );

    let mut real = vec![];
    let mut every = vec![];
    for r in 0..3 {
        let l = b(r, Balance::Pad).build().unwrap();
        assert_eq!(l.batches_per_epoch(), 11, "Pad, rank {r}: ceil(64 / 6)");
        let batches = all(l);
        assert_eq!(batches.len(), 11, "Pad, rank {r}");
        let flags: Vec<bool> = batches.iter().flat_map(|x| x.padding.clone()).collect();
        let first_pad = flags.iter().position(|p| *p).unwrap_or(flags.len());
        assert!(
            flags[first_pad..].iter().all(|p| *p),
            "Pad, rank {r}: a sample after padding (padding only at the end): {flags:?}"
        );
        for x in &batches {
            for i in 0..x.batch_size {
                if x.padding[i] {
                    assert!(
                        x.image_ids[i].is_empty(),
                        "rank {r}: a padding slot has an id"
                    );
                    assert!(
                        x.tasks.values().all(|t| !t.present[i]),
                        "rank {r}: a padding slot has a label"
                    );
                    assert!(
                        sample(x, i).iter().all(|v| *v == 0),
                        "rank {r}: a padding slot has pixels"
                    );
                }
            }
        }
        real.push(first_pad);
        every.extend(ids(&batches));
    }
    real.sort_unstable();
    assert_eq!(real, [32, 44, 64], "samples per rank");
    assert_eq!(every.len(), 140, "Pad keeps every sample");
    assert_eq!(every.iter().collect::<BTreeSet<_>>().len(), 140);
    // Drop yields the first 5 batches of what Pad yields, rank by rank.
    let pad_first: BTreeSet<String> = (0..3)
        .flat_map(|r| {
            let mut l = b(r, Balance::Pad).build().unwrap();
            ids(&take(&mut l, 5))
        })
        .collect();
    assert_eq!(pad_first, dropped.into_iter().collect());
}

/// Resuming on 3 ranks with `Pad` after 5, 6 and 7 batches (inside the
/// padding of the rank with 32 samples, and of the one with 44 after 6) and
/// after 8 (the end of the epoch; with `Drop` after 4).
#[test]
fn resuming_inside_the_padding_and_at_the_end_of_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let root = demo(dir.path(), 140);
    for (balance, stops) in [
        (Balance::Pad, vec![5usize, 6, 7, 8]),
        (Balance::Drop, vec![3, 4]),
    ] {
        let b = |r: usize| builder(&root).rank(r, 3).balance(balance);
        let full: Vec<Vec<Batch>> = (0..3).map(|r| all(b(r).build().unwrap())).collect();
        let n = full[0].len();
        // The rank with the fewest samples is all padding after batch 4.
        assert!(
            balance == Balance::Drop
                || full
                    .iter()
                    .any(|f| f[4..].iter().all(|x| x.padding.iter().all(|p| *p))),
            "{balance:?}: no rank is padding from batch 4 on"
        );
        for &stop in &stops {
            let mut states: Vec<LoaderState> = vec![];
            for (r, f) in full.iter().enumerate() {
                let mut l = b(r).build().unwrap();
                assert_eq!(keys(&take(&mut l, stop)), keys(&f[..stop]));
                states.push(l.state());
            }
            assert!(
                states.iter().all(|s| *s == states[0]),
                "{balance:?}, after {stop}: ranks' states differ: {states:?}"
            );
            let json = serde_json::to_string(&states[0]).unwrap();
            for (r, f) in full.iter().enumerate() {
                let state: LoaderState = serde_json::from_str(&json).unwrap();
                let mut l = b(r)
                    .resume(state)
                    .build()
                    .unwrap_or_else(|e| panic!("{balance:?}, rank {r}, after {stop}: {e}"));
                assert_eq!(l.batches_per_epoch(), n as u64);
                assert_eq!(
                    l.remaining(),
                    (n - stop) as u64,
                    "{balance:?}, rank {r}, after {stop}"
                );
                let rest = all(l.by_ref());
                assert_eq!(
                    keys(&rest),
                    keys(&f[stop..]),
                    "{balance:?}, rank {r}: resumed after {stop} of {n}"
                );
                assert!(l.next().is_none());
                assert_eq!(
                    l.metrics().decoded as usize,
                    ids(&f[stop..]).len(),
                    "{balance:?}, rank {r}, after {stop}: decoded what was yielded before"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- item 9

fn refused(b: LoaderBuilder, what: &str, needles: &[&str]) {
    match b.build() {
        Ok(_) => panic!("a state from {what} was accepted"),
        Err(e @ Error::Loader(_)) => {
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "{what}: {n:?} not in the error: {msg}");
            }
        }
        Err(e) => panic!("{what}: not a loader error: {e}"),
    }
}

/// A state is refused by a loader of another epoch, batch size, set of
/// required tasks or dataset version (its plan would be another one), with
/// an error that says what differs.
#[test]
fn a_state_from_another_plan_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = demo(dir.path(), 70);
    let mut l = builder(&root).build().unwrap();
    take(&mut l, 2);
    let s = l.state();
    drop(l);
    let version = s.version;
    assert!(version > 1);
    // The same settings accept it.
    let rest = all(builder(&root).resume(s.clone()).build().unwrap());
    assert_eq!(rest.len(), 70 / B - 2);

    refused(
        builder(&root).epoch(1).resume(s.clone()),
        "another epoch",
        &["epoch 0", "epoch 1"],
    );
    refused(
        builder(&root).batch_size(4).resume(s.clone()),
        "another batch size",
        &["b=8", "b=4"],
    );
    refused(
        builder(&root).seed(12).resume(s.clone()),
        "another seed",
        &["seed 11", "seed 12"],
    );
    // The same tasks, the first one required.
    let names: Vec<String> = must_ds::demo::demo_tasks()
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut req = LoaderBuilder::open(&root, None);
    for (i, t) in names.iter().enumerate() {
        req = req.task(t, i == 0);
    }
    refused(
        req.batch_size(B)
            .output_size(W, H)
            .seed(11)
            .resume(s.clone()),
        "another set of required tasks",
        &[&names[0]],
    );
    refused(
        builder(&root).balance(Balance::Pad).resume(s.clone()),
        "another balance",
        &["Drop", "Pad"],
    );
    let older = util::with_demo_tasks(LoaderBuilder::open(&root, Some(version - 1)))
        .batch_size(B)
        .output_size(W, H)
        .seed(11)
        .resume(s.clone());
    refused(
        older,
        "another dataset version",
        &[
            &format!("version {version}"),
            &format!("version {}", version - 1),
        ],
    );
    // A state past the end of its epoch is refused too.
    let mut late = s.clone();
    late.segments.last_mut().unwrap().batches = 100;
    refused(builder(&root).resume(late), "past the end", &["100"]);
}

/// After a world-size change with `Drop`, no sample is yielded twice, no
/// padding appears, ranks' states stay equal, and ending on one rank loses
/// fewer than B samples (its last partial batch).
#[test]
fn resuming_with_another_world_size_and_drop_neither_repeats_nor_loses() {
    let dir = tempfile::tempdir().unwrap();
    let root = demo(dir.path(), 140);
    let b = |r, w| builder(&root).balance(Balance::Drop).rank(r, w);
    let mut seen = vec![];
    let mut run = |w: usize, n: Option<usize>, state: Option<LoaderState>| -> LoaderState {
        let mut states = vec![];
        for r in 0..w {
            let mut bb = b(r, w);
            if let Some(s) = &state {
                bb = bb.resume(s.clone());
            }
            let mut l = bb.build().unwrap();
            let got = match n {
                Some(n) => take(&mut l, n),
                None => all(l.by_ref()),
            };
            for x in &got {
                assert!(
                    x.padding.iter().all(|p| !p),
                    "Drop: padding on rank {r} of {w}"
                );
            }
            seen.extend(ids(&got));
            states.push(l.state());
        }
        assert!(
            states.iter().all(|s| *s == states[0]),
            "world {w}: ranks' states differ: {states:?}"
        );
        states.pop().unwrap()
    };
    let s = run(2, Some(3), None);
    assert_eq!(s.segments.len(), 1);
    let s = run(3, Some(2), Some(s));
    assert_eq!(s.segments.len(), 2);
    let s = run(1, None, Some(s));
    assert_eq!(s.segments.len(), 3);
    let set: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(set.len(), seen.len(), "a sample yielded twice");
    assert_eq!(seen.len() % B, 0);
    assert!(
        seen.len() > 140 - B,
        "{} of 140 samples yielded: a world-size change under Drop lost samples",
        seen.len()
    );
}
