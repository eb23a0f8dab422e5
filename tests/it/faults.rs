//! Flaky and broken stores: with 5 % of requests failing (before or after
//! they take effect), ingest and labeling complete with the same content as
//! without faults; a permanent failure ends with an error naming the object.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use must_ds::codec::{ClassLabel, Label};
use must_ds::format::TaskDef;
use must_ds::ingest::{ingest, IngestOptions};
use must_ds::store::retry::{FaultyStore, RetryPolicy, RetryStore};
use must_ds::store::Location;
use must_ds::write::LabelWriter;
use must_ds::{Dataset, DatasetOptions};
use object_store::local::LocalFileSystem;

use crate::util;

const TASK: &str = r#"{"name":"cls","kind":"classification","num_classes":7,"encoding":"topk","teacher":"ground-truth"}"#;

fn faulty(dir: &std::path::Path, faults: FaultyStore) -> (Location, Arc<FaultyStore>) {
    let faults = Arc::new(faults);
    let policy = RetryPolicy {
        attempts: 6,
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
    };
    let store = Arc::new(RetryStore::new(faults.clone(), policy));
    (
        Location {
            store,
            root: Default::default(),
            url: dir.display().to_string(),
        },
        faults,
    )
}

fn local(dir: &std::path::Path) -> Arc<LocalFileSystem> {
    std::fs::create_dir_all(dir).unwrap();
    Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap())
}

/// Ingests 30 photos and labels every shard; returns image id → label.
fn job(rt: &tokio::runtime::Runtime, loc: Location) -> BTreeMap<String, Option<Label>> {
    let opts = DatasetOptions::default().with_checkpoint_interval(3);
    let mut ds = rt
        .block_on(Dataset::init_location(
            loc.clone(),
            Default::default(),
            opts.clone(),
        ))
        .unwrap();
    rt.block_on(ds.define_task(TaskDef::from_json(TASK).unwrap()))
        .unwrap();
    let mut io = IngestOptions::new("flaky");
    io.workers = 2;
    io.shard.shard_rows = 4;
    io.shard.row_group_rows = 2;
    ingest(rt.handle(), &ds, util::inputs(30), &io, None).unwrap();
    rt.block_on(ds.refresh()).unwrap();
    for shard in ds.snapshot().images.keys().copied().collect::<Vec<_>>() {
        let mut w = rt
            .block_on(LabelWriter::for_shard(&ds, "cls", shard))
            .unwrap();
        for id in w.image_ids().to_vec() {
            let n: u32 = id.trim_start_matches("img-").parse().unwrap();
            w.set(
                &id,
                Label::Classification(ClassLabel::TopK {
                    classes: vec![n % 7],
                    probs: vec![0.5],
                }),
            )
            .unwrap();
        }
        rt.block_on(ds.add_label_file("cls", shard, w.finish().unwrap(), false))
            .unwrap();
    }
    // Read everything back through the same store.
    let ds = rt
        .block_on(Dataset::open_location(loc, None, opts))
        .unwrap();
    let mut out = BTreeMap::new();
    for (shard, a) in &ds.snapshot().images {
        for g in 0..a.row_groups.len() {
            let rg = rt
                .block_on(ds.read_row_group(*shard, g, &["cls"], None))
                .unwrap();
            for (r, l) in rg.images.iter().zip(&rg.labels["cls"]) {
                assert!(
                    out.insert(r.image_id.clone(), l.clone()).is_none(),
                    "{} twice",
                    r.image_id
                );
            }
        }
    }
    out
}

#[test]
fn five_percent_failing_requests_change_nothing() {
    let rt = util::rt();
    let clean = tempfile::tempdir().unwrap();
    let (loc, _) = faulty(clean.path(), FaultyStore::new(local(clean.path()), 0.0, 1));
    let expected = job(&rt, loc);
    assert_eq!(expected.len(), 30);

    let flaky = tempfile::tempdir().unwrap();
    let (loc, faults) = faulty(flaky.path(), FaultyStore::new(local(flaky.path()), 0.05, 7));
    let got = job(&rt, loc);
    assert!(
        faults.injected.load(std::sync::atomic::Ordering::Relaxed) > 5,
        "faults were injected"
    );
    assert_eq!(got, expected);
    let v = util::must(&["validate", flaky.path().to_str().unwrap()]);
    assert!(v.status.success(), "{}", util::stdout(&v));
}

#[test]
fn a_permanent_failure_names_the_object() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let (loc, _) = faulty(
        dir.path(),
        FaultyStore::new(local(dir.path()), 0.0, 1).always_failing("labels/"),
    );
    let mut ds = rt
        .block_on(Dataset::init_location(
            loc,
            Default::default(),
            Default::default(),
        ))
        .unwrap();
    rt.block_on(ds.define_task(TaskDef::from_json(TASK).unwrap()))
        .unwrap();
    let mut io = IngestOptions::new("x");
    io.workers = 1;
    ingest(rt.handle(), &ds, util::inputs(3), &io, None).unwrap();
    rt.block_on(ds.refresh()).unwrap();
    let w = rt.block_on(LabelWriter::for_shard(&ds, "cls", 0)).unwrap();
    let err = rt
        .block_on(ds.add_label_file("cls", 0, w.finish().unwrap(), false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("labels/cls/part-") && err.contains("failed 6 times"),
        "{err}"
    );
    // Nothing was committed for it.
    let ds = rt
        .block_on(Dataset::open(dir.path().to_str().unwrap()))
        .unwrap();
    assert!(ds.snapshot().labels.is_empty());
}

/// A loader epoch through a store where 5 % of requests fail yields the same
/// batches, sample for sample and pixel for pixel, as without faults.
#[test]
fn a_loader_epoch_with_five_percent_failing_requests_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    must_ds::cli::demo::build(&root, 70).unwrap();
    let rt = util::rt();
    let epoch = |ds: Dataset| -> Vec<must_ds::loader::Batch> {
        util::with_demo_tasks(must_ds::loader::LoaderBuilder::new(ds))
            .batch_size(8)
            .output_size(32, 32)
            .seed(3)
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    };
    let clean = epoch(rt.block_on(Dataset::open(root.to_str().unwrap())).unwrap());
    let (loc, faults) = faulty(&root, FaultyStore::new(local(&root), 0.05, 9));
    let ds = rt
        .block_on(Dataset::open_location(loc, None, DatasetOptions::default()))
        .unwrap();
    let flaky = epoch(ds);
    assert!(
        faults.injected.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "no fault was injected"
    );
    assert_eq!(clean.len(), 70 / 8);
    assert_eq!(clean, flaky);
}
