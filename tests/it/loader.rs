//! The loader: determinism, equal steps per rank, exact resumption (also
//! with another world size), the corrupt-data policy, recycled and
//! full-resolution batches, many epochs. Augmentation: loader_augment.rs.

use std::collections::BTreeSet;
use std::path::Path;

use must_ds::codec::Label;
use must_ds::format::TaskDef;
use must_ds::loader::{Balance, Batch, CorruptPolicy, LoaderBuilder, TaskData};
use must_ds::write::{ImageShardOptions, ImageShardWriter, LabelWriter};
use must_ds::{Dataset, Error};

use crate::util;

fn demo(dir: &Path, images: usize) -> String {
    let root = dir.join("demo");
    must_ds::demo::build(&root, images).unwrap();
    root.to_str().unwrap().to_owned()
}

fn builder(root: &str) -> LoaderBuilder {
    util::with_demo_tasks(LoaderBuilder::open(root, None))
        .batch_size(8)
        .output_size(48, 40)
        .seed(11)
        .shuffle_row_groups(2)
}

fn all(b: LoaderBuilder) -> Vec<Batch> {
    b.build().unwrap().map(|b| b.unwrap()).collect()
}

use crate::util::real_ids as ids;

#[test]
fn batches_depend_on_seed_and_epoch_not_on_threads_or_prefetch() {
    let dir = tempfile::tempdir().unwrap();
    let root = demo(dir.path(), 140);
    let a = all(builder(&root)
        .workers(1)
        .prefetch_batches(1)
        .requests_in_flight(1));
    let b = all(builder(&root)
        .workers(3)
        .prefetch_batches(6)
        .prefetch_bytes(2 << 20));
    assert_eq!(a.len(), 140 / 8);
    assert_eq!(a, b, "same batches, pixels and labels");
    // Every task is there, with its shapes.
    let first = &a[0];
    assert_eq!(first.tasks.len(), 4);
    match &first.task("luma-bands").unwrap().data {
        TaskData::Segmentation { mask, .. } => assert_eq!(mask.len(), 8 * 48 * 40),
        other => panic!("{other:?}"),
    }
    match &first.task("scene-color").unwrap().data {
        TaskData::Classification { probs, num_classes } => {
            assert_eq!(probs.len(), 8 * num_classes);
            // Top-3 mass spread over the other classes: every row sums to 1.
            for row in probs.chunks(*num_classes) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{row:?}");
            }
        }
        other => panic!("{other:?}"),
    }
    let c = all(builder(&root).seed(12));
    assert_ne!(ids(&a), ids(&c), "another seed, another order");
    let d = all(builder(&root).epoch(1));
    assert_ne!(ids(&a), ids(&d), "another epoch, another order");
    let set: BTreeSet<String> = ids(&a).into_iter().collect();
    assert_eq!(set.len(), 136, "no repeats (17 full batches of 8)");
}

#[test]
fn every_rank_gets_the_same_number_of_batches() {
    let dir = tempfile::tempdir().unwrap();
    let root = demo(dir.path(), 140);
    for balance in [Balance::Drop, Balance::Pad] {
        let ranks: Vec<Vec<Batch>> = (0..3)
            .map(|r| all(builder(&root).rank(r, 3).balance(balance)))
            .collect();
        let n = ranks[0].len();
        assert!(n > 0 && ranks.iter().all(|r| r.len() == n), "{balance:?}");
        let every: Vec<String> = ranks.iter().flat_map(|r| ids(r)).collect();
        let set: BTreeSet<&String> = every.iter().collect();
        assert_eq!(
            set.len(),
            every.len(),
            "{balance:?}: no sample on two ranks"
        );
        if balance == Balance::Pad {
            assert_eq!(every.len(), 140, "padding keeps every sample");
            // Padding slots carry nothing.
            for b in ranks.iter().flatten() {
                for (i, p) in b.padding.iter().enumerate() {
                    if *p {
                        assert!(b.tasks.values().all(|t| !t.present[i]));
                    }
                }
            }
        }
    }
}

#[test]
fn resuming_yields_exactly_the_rest_and_decodes_nothing_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let root = demo(dir.path(), 140);
    let full = all(builder(&root));
    for stop in [0, 1, 5, full.len() - 1] {
        let mut first = builder(&root).build().unwrap();
        for b in full.iter().take(stop) {
            assert_eq!(&first.next().unwrap().unwrap(), b);
        }
        let state = first.state();
        drop(first);
        let json = serde_json::to_string(&state).unwrap();
        let state = serde_json::from_str(&json).unwrap();
        let mut resumed = builder(&root).resume(state).build().unwrap();
        let rest: Vec<Batch> = resumed.by_ref().map(|b| b.unwrap()).collect();
        assert_eq!(rest, full[stop..], "stopped after {stop}");
        assert_eq!(
            resumed.metrics().decoded as usize,
            rest.len() * 8,
            "stopped after {stop}"
        );
    }
    // A state does not fit another seed.
    let s = builder(&root).build().unwrap().state();
    let e = builder(&root).seed(1).resume(s).build().err().unwrap();
    assert!(matches!(e, Error::Loader(_)), "{e}");
}

#[test]
fn resuming_with_another_world_size_neither_repeats_nor_loses() {
    let dir = tempfile::tempdir().unwrap();
    let root = demo(dir.path(), 140);
    let b = |r, w| builder(&root).balance(Balance::Pad).rank(r, w);
    let mut seen = vec![];
    let mut state = None;
    for r in 0..2 {
        let mut l = b(r, 2).build().unwrap();
        for _ in 0..3 {
            seen.extend(ids(&[l.next().unwrap().unwrap()]));
        }
        state = Some(l.state());
    }
    let state = state.unwrap();
    assert_eq!(state.segments.len(), 1);
    let mut state2 = None;
    for r in 0..3 {
        let mut l = b(r, 3).resume(state.clone()).build().unwrap();
        for _ in 0..2 {
            seen.extend(ids(&[l.next().unwrap().unwrap()]));
        }
        state2 = Some(l.state());
    }
    let l = b(0, 1).resume(state2.unwrap()).build().unwrap();
    seen.extend(ids(&l.map(|b| b.unwrap()).collect::<Vec<_>>()));
    let set: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(set.len(), seen.len(), "no repeats");
    assert_eq!(seen.len(), 140, "nothing lost");
}

#[test]
fn corrupt_data_fails_or_is_skipped_by_policy_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bad");
    let root_s = root.to_str().unwrap();
    let rt = util::rt();
    let mut ds = rt
        .block_on(Dataset::init(root_s, Default::default()))
        .unwrap();
    let photos = util::photos();
    let mut w = ImageShardWriter::new(ImageShardOptions {
        row_group_rows: 4,
        ..Default::default()
    })
    .unwrap();
    for i in 0..12 {
        let bytes = &photos[i % photos.len()].1;
        if i == 6 {
            // A JPEG cut short: its header passes, its data does not decode.
            w.add_image("broken", "p", &bytes[..bytes.len() / 3])
                .unwrap();
        } else {
            w.add_image(&format!("ok-{i}"), "p", bytes).unwrap();
        }
    }
    let shard = rt
        .block_on(ds.add_image_shard(w.finish().unwrap()))
        .unwrap();
    let task = TaskDef::from_json(r#"{"name":"cls","kind":"classification","num_classes":4,"encoding":"dense","teacher":{"name":"t"}}"#).unwrap();
    rt.block_on(ds.define_task(task)).unwrap();
    let mut l = rt
        .block_on(LabelWriter::for_shard(&ds, "cls", shard.shard))
        .unwrap();
    for i in (0..12).filter(|i| *i != 6) {
        l.set(
            &format!("ok-{i}"),
            Label::Classification(must_ds::codec::ClassLabel::Dense(vec![0.25; 4])),
        )
        .unwrap();
    }
    rt.block_on(ds.add_label_file("cls", shard.shard, l.finish().unwrap(), false))
        .unwrap();
    let b = |p| {
        LoaderBuilder::open(root_s, None)
            .task("cls", false)
            .batch_size(4)
            .output_size(32, 32)
            .on_corrupt(p)
    };
    let errs: Vec<Error> = b(CorruptPolicy::Fail)
        .build()
        .unwrap()
        .filter_map(|r| r.err())
        .collect();
    assert_eq!(errs.len(), 1);
    let msg = errs[0].to_string();
    assert!(
        msg.contains(&shard.path) && msg.contains("row group 1") && msg.contains("\"broken\""),
        "{msg}"
    );
    let mut skip = b(CorruptPolicy::Skip).build().unwrap();
    let got = ids(&skip.by_ref().map(|r| r.unwrap()).collect::<Vec<_>>());
    assert_eq!(got.len(), 11);
    assert!(!got.contains(&"broken".to_owned()));
    let rep = skip.skipped();
    assert_eq!(rep.len(), 1);
    assert_eq!(
        (rep[0].row_group, rep[0].image_id.as_deref()),
        (1, Some("broken"))
    );
    assert_eq!(rep[0].file, shard.path);

    // A whole label file damaged on disk: its row groups are reported, not misread.
    let file = &rt
        .block_on(Dataset::open(root_s))
        .unwrap()
        .snapshot()
        .labels[&("cls".to_owned(), shard.shard)]
        .path
        .clone();
    let path = root.join(file);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[4..n - 8].iter_mut().for_each(|b| *b = 0x5a);
    std::fs::write(&path, bytes).unwrap();
    let err = b(CorruptPolicy::Fail)
        .build()
        .unwrap()
        .find_map(|r| r.err())
        .unwrap();
    assert!(
        matches!(err, Error::Corrupt { .. }) && err.to_string().contains(&shard.path),
        "{err}"
    );
    let mut skip = b(CorruptPolicy::Skip).build().unwrap();
    let n = skip
        .by_ref()
        .map(|r| r.unwrap())
        .map(|b| b.real())
        .sum::<usize>();
    assert_eq!(n, 0);
    assert_eq!(skip.skipped().len(), 3, "one report per row group");
    assert!(skip.skipped()[0].reason.contains(file.as_str()));
}

#[test]
fn recycled_batches_carry_nothing_stale() {
    let dir = tempfile::tempdir().unwrap();
    let root = demo(dir.path(), 70);
    // Rank 2 of 3 with padding: its last batch has empty slots, which a
    // recycled buffer would fill with an earlier batch's pixels and labels.
    let b = || builder(&root).workers(1).balance(Balance::Pad).rank(2, 3);
    let fresh = all(b());
    assert!(fresh.iter().any(|x| x.real() < x.batch_size), "no padding");
    let loader = b().build().unwrap();
    let mut recycled = vec![];
    let mut it = loader;
    while let Some(x) = it.next() {
        let x = x.unwrap();
        recycled.push(x.clone());
        it.recycle(x);
    }
    assert_eq!(fresh.len(), recycled.len());
    for (f, r) in fresh.iter().zip(&recycled) {
        assert_eq!(f.padding, r.padding, "batch {}", f.index);
        assert_eq!(f.image_ids, r.image_ids, "batch {}", f.index);
        assert!(f.images == r.images, "batch {}: pixels differ", f.index);
        for (name, t) in &f.tasks {
            assert_eq!(t, &r.tasks[name], "batch {} task {name}", f.index);
        }
    }
    assert_eq!(fresh, recycled);
}

#[test]
fn full_resolution_maps_stream_with_the_smallest_prefetch_budget() {
    // Row groups far larger than the budget per open slice: a batch being
    // assembled may hold rows of a closed slice while the next slice's fetch
    // waits for budget; that must never wait on the batch.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("full");
    must_ds::demo::build_with(&root, 70, true, must_ds::write::BlobCodec::default()).unwrap();
    let root = root.to_str().unwrap().to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let n: usize = util::with_demo_tasks(LoaderBuilder::open(&root, None))
            .batch_size(8)
            .output_size(64, 64)
            .label_stride(2)
            .prefetch_bytes(1 << 20)
            .shuffle_row_groups(4)
            .workers(2)
            .epochs(0..2)
            .unwrap()
            .map(|b| b.unwrap().real())
            .sum();
        let _ = tx.send(n);
    });
    let n = rx
        .recv_timeout(std::time::Duration::from_secs(300))
        .expect("the loader stalled");
    assert_eq!(n, 2 * 64, "two epochs of 8 full batches");
}

#[test]
fn many_epochs_give_the_batches_of_fresh_per_epoch_loaders() {
    let dir = tempfile::tempdir().unwrap();
    let root = demo(dir.path(), 70);
    let b = || builder(&root).workers(2).rank(1, 2).balance(Balance::Pad);
    let fresh: Vec<Batch> = (3..6).flat_map(|e| all(b().epoch(e))).collect();
    let per_epoch = b().epoch(3).build().unwrap().batches_per_epoch();
    let mut epochs = b().epochs(3..6).unwrap();
    let mut got = vec![];
    let mut seen_epochs = vec![];
    // remaining() counts down to 0 within each epoch.
    loop {
        let before = epochs
            .current()
            .map(|l| (l.remaining(), l.batches_per_epoch()));
        let Some(batch) = epochs.next() else { break };
        let batch = batch.unwrap();
        let (remaining, total) = before.unwrap();
        assert_eq!(total, per_epoch);
        if remaining == 0 {
            // The previous epoch was done: this batch opens the next one.
            assert_eq!(batch.index, 0);
        } else {
            assert_eq!(batch.index, total - remaining, "epoch {}", batch.epoch);
        }
        if seen_epochs.last() != Some(&batch.epoch) {
            seen_epochs.push(batch.epoch);
        }
        got.push(batch.clone());
        epochs.recycle(batch);
    }
    assert_eq!(seen_epochs, vec![3, 4, 5]);
    assert_eq!(got.len() as u64, 3 * per_epoch);
    assert_eq!(got, fresh, "epoch e of many = a fresh loader of epoch e");
    // After the end: nothing more, and the last epoch's counters stay.
    assert!(epochs.next().is_none());
    assert!(epochs.metrics().batches > 0);
}
