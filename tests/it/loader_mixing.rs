//! What the loader promises about required tasks and weighted mixing of
//! sources (issue 14, item 10), through the public builder only: samples
//! without a required label left out and counted, and the mixed epoch kept
//! through a resume and a world-size change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use must_ds::codec::{ClassLabel, Label};
use must_ds::format::TaskDef;
use must_ds::ingest::{ingest, IngestOptions, InputData, InputImage};
use must_ds::loader::{Balance, Batch, LoaderBuilder, LoaderState};
use must_ds::write::LabelWriter;
use must_ds::Dataset;

use crate::loader_semantics::{all, take};
use crate::util;
use crate::util::real_ids as ids;

// --------------------------------------------------------------- item 10

const CLS: &str = r#"{"name":"cls","kind":"classification","num_classes":4,"encoding":"dense","teacher":{"name":"t"}}"#;
const REQ: &str = r#"{"name":"req","kind":"classification","num_classes":4,"encoding":"dense","teacher":{"name":"t"}}"#;

fn images(prefix: &str, n: usize) -> Vec<InputImage> {
    let p = util::photos();
    (0..n)
        .map(|i| InputImage {
            image_id: format!("{prefix}-{i:03}"),
            data: InputData::Bytes(p[i % p.len()].1.clone().into()),
        })
        .collect()
}

/// Source `a`: 48 images in shards of 16 (row groups of 8); source `b`: 24
/// in shards of 12 (row groups of 6). `cls` labels everything; `req`
/// labels the shards of `a` but every fifth image, and no shard of `b`.
/// Returns the root and the ids that have a `req` label.
fn mixed(dir: &Path) -> (String, BTreeSet<String>) {
    let root = dir.join("mixed");
    let url = root.to_str().unwrap().to_owned();
    let rt = util::rt();
    let mut ds = rt
        .block_on(Dataset::init(&url, Default::default()))
        .unwrap();
    for t in [CLS, REQ] {
        rt.block_on(ds.define_task(TaskDef::from_json(t).unwrap()))
            .unwrap();
    }
    for (source, n, shard, rg) in [("a", 48, 16, 8), ("b", 24, 12, 6)] {
        let mut o = IngestOptions::new(source);
        o.workers = 1;
        o.shard.shard_rows = shard;
        o.shard.row_group_rows = rg;
        ingest(rt.handle(), &ds, images(source, n), &o, None).unwrap();
    }
    rt.block_on(ds.refresh()).unwrap();
    let mut with_req = BTreeSet::new();
    let shards: Vec<(u64, String)> = ds
        .snapshot()
        .images
        .iter()
        .map(|(s, a)| (*s, a.sources.keys().next().unwrap().clone()))
        .collect();
    assert_eq!(shards.len(), 5);
    for (shard, source) in shards {
        for task in ["cls", "req"] {
            if task == "req" && source == "b" {
                continue;
            }
            let mut w = rt
                .block_on(LabelWriter::for_shard(&ds, task, shard))
                .unwrap();
            for id in w.image_ids().to_vec() {
                let n: usize = id[2..].parse().unwrap();
                if task == "req" {
                    if n.is_multiple_of(5) {
                        continue;
                    }
                    with_req.insert(id.clone());
                }
                w.set(&id, Label::Classification(ClassLabel::Dense(vec![0.25; 4])))
                    .unwrap();
            }
            rt.block_on(ds.add_label_file(task, shard, w.finish().unwrap(), false))
                .unwrap();
        }
    }
    assert_eq!(with_req.len(), 48 - 10);
    (url, with_req)
}

/// A required task: shards without its file are not planned, samples
/// without its label are left out (padding slots) and counted.
#[test]
fn samples_without_a_required_task_are_left_out_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (root, with_req) = mixed(dir.path());
    let b = || {
        LoaderBuilder::open(&root, None)
            .task("cls", false)
            .task("req", true)
            .batch_size(4)
            .output_size(32, 32)
            .seed(5)
            .balance(Balance::Pad)
    };
    let mut l = b().build().unwrap();
    let batches = all(l.by_ref());
    // The 3 shards of `a` (48 rows) are planned, those of `b` are not.
    assert_eq!(batches.len(), 48 / 4);
    let got = ids(&batches);
    assert_eq!(
        got.iter().cloned().collect::<BTreeSet<_>>(),
        with_req,
        "exactly the samples with a `req` label"
    );
    assert_eq!(got.len(), with_req.len(), "no sample twice");
    for x in &batches {
        for i in 0..x.batch_size {
            assert_eq!(
                x.tasks["req"].present[i], !x.padding[i],
                "{:?}",
                x.image_ids
            );
            if !x.padding[i] {
                assert!(x.tasks["cls"].present[i]);
                assert_eq!(x.sources[i], "a");
            }
        }
    }
    let m = l.metrics();
    assert_eq!(m.missing_required, 10, "left out for missing `req`");
    assert_eq!(m.samples as usize, with_req.len());
    // Optional, the same task leaves nothing out.
    let mut l = LoaderBuilder::open(&root, None)
        .task("cls", false)
        .task("req", false)
        .batch_size(4)
        .output_size(32, 32)
        .balance(Balance::Pad)
        .build()
        .unwrap();
    assert_eq!(ids(&all(l.by_ref())).len(), 72);
    assert_eq!(l.metrics().missing_required, 0);
}

/// Weights 1 : 3 over an epoch of 64 samples: 16 of `a` (all distinct) and
/// 48 of `b` (its 24 images twice), spread over the epoch, and the same
/// samples when the epoch is cut by a resume on 2 ranks, then 3, then 1.
#[test]
fn weighted_mixing_end_to_end_with_resume_and_a_world_size_change() {
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = mixed(dir.path());
    let b = |r, w| {
        LoaderBuilder::open(&root, None)
            .task("cls", false)
            .batch_size(4)
            .output_size(32, 32)
            .seed(9)
            .weights([("a", 1.0), ("b", 3.0)])
            .epoch_size(64)
            .balance(Balance::Pad)
            .rank(r, w)
    };
    let count = |v: &[(String, String)]| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for (id, _) in v {
            *m.entry(id.clone()).or_default() += 1;
        }
        m
    };
    let samples = |batches: &[Batch]| -> Vec<(String, String)> {
        batches
            .iter()
            .flat_map(|x| {
                (0..x.batch_size)
                    .filter(|&i| !x.padding[i])
                    .map(|i| (x.image_ids[i].clone(), x.sources[i].clone()))
            })
            .collect()
    };
    let whole = samples(&all(b(0, 1).build().unwrap()));
    assert_eq!(whole.len(), 64);
    for (id, s) in &whole {
        assert_eq!(&id[..1], s.as_str(), "{id} from source {s}");
    }
    let per_source = |v: &[(String, String)], s: &str| v.iter().filter(|x| x.1 == s).count();
    assert_eq!(
        (per_source(&whole, "a"), per_source(&whole, "b")),
        (16, 48),
        "weights 1 : 3 of 64"
    );
    let c = count(&whole);
    assert!(c
        .iter()
        .filter(|x| x.0.starts_with("a-"))
        .all(|x| *x.1 == 1));
    assert_eq!(c.iter().filter(|x| x.0.starts_with("b-")).count(), 24);
    assert!(c
        .iter()
        .filter(|x| x.0.starts_with("b-"))
        .all(|x| *x.1 == 2));
    for q in whole.chunks(16) {
        let a = per_source(q, "a");
        assert!(
            (2..=6).contains(&a),
            "a quarter of the epoch has {a} of 16 from `a` (4 expected)"
        );
    }

    // 2 ranks for 2 batches, 3 for 1, then 1 to the end.
    let mut got = vec![];
    let mut state: Option<LoaderState> = None;
    for (w, n) in [(2usize, Some(2usize)), (3, Some(1)), (1, None)] {
        let mut states = vec![];
        for r in 0..w {
            let mut bb = b(r, w);
            if let Some(s) = &state {
                bb = bb.resume(s.clone());
            }
            let mut l = bb.build().unwrap();
            let batches = match n {
                Some(n) => take(&mut l, n),
                None => all(l.by_ref()),
            };
            got.extend(samples(&batches));
            states.push(l.state());
        }
        assert!(
            states.iter().all(|s| *s == states[0]),
            "world {w}: {states:?}"
        );
        state = states.pop();
    }
    assert_eq!(
        count(&got),
        c,
        "the cut epoch yields the same samples as the whole one"
    );
    assert_eq!((per_source(&got, "a"), per_source(&got, "b")), (16, 48));
}
