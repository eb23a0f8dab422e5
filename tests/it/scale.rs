//! Metadata at scale: a log with 100,000 data files opens in a handful of
//! requests thanks to checkpoints (counted with a request-counting store).

use std::collections::BTreeMap;
use std::sync::Arc;

use must_ds::format::{Action, AddImages, AddLabels, Commit, DatasetInfo, Protocol, TaskDef};
use must_ds::store::counting::CountingStore;
use must_ds::store::{checkpoint, layout, Location};
use must_ds::{Dataset, DatasetOptions};
use object_store::local::LocalFileSystem;

use crate::util;

/// Writes commits 0..=1001 with 50,000 image shards and 50,000 label files
/// (actions only; the data files do not exist).
fn synthetic_log(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join(layout::LOG_DIR)).unwrap();
    let task = TaskDef::from_json(r#"{"name":"cls","kind":"classification","num_classes":1000,"encoding":"topk","teacher":"ground-truth"}"#).unwrap();
    let mut commits = vec![
        vec![
            Action::Protocol(Protocol::default()),
            Action::Dataset(DatasetInfo {
                name: "scale".into(),
                description: String::new(),
            }),
        ],
        vec![Action::Task(task)],
    ];
    for c in 0..1000u64 {
        let mut actions = vec![];
        for k in 0..50u64 {
            let shard = c * 50 + k;
            actions.push(Action::AddImages(AddImages {
                shard,
                path: format!("images/part-{shard:08}.parquet"),
                rows: 1000,
                bytes: 64 << 20,
                checksum: "crc32c:00000000".into(),
                row_groups: vec![1000],
                sources: BTreeMap::from([("jft".to_string(), 1000)]),
            }));
            actions.push(Action::AddLabels(AddLabels {
                task: "cls".into(),
                shard,
                path: format!("labels/cls/part-{shard:08}.parquet"),
                rows: 1000,
                bytes: 1 << 20,
                checksum: "crc32c:00000000".into(),
                labeled: 990,
                replace: false,
            }));
        }
        commits.push(actions);
    }
    for (v, actions) in commits.into_iter().enumerate() {
        let c = Commit {
            version: v as u64,
            timestamp: "2026-11-27T00:00:00Z".into(),
            operation: "synthetic".into(),
            writer: "test".into(),
            actions,
            transaction: None,
        };
        std::fs::write(dir.join(layout::log_file(v as u64)), c.to_bytes()).unwrap();
    }
}

#[test]
fn opening_100k_data_files_takes_a_handful_of_requests() {
    let keep = std::env::var("MUST_SCALE_DIR").ok();
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep
        .as_deref()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("scale"));
    let _ = std::fs::remove_dir_all(&dir);
    synthetic_log(&dir);
    let rt = util::rt();
    let url = dir.to_str().unwrap();
    let replayed = rt.block_on(Dataset::open(url)).unwrap();
    assert_eq!(
        replayed.snapshot().images.len() + replayed.snapshot().labels.len(),
        100_000
    );
    rt.block_on(checkpoint::write(
        replayed.store().0,
        replayed.store().1,
        replayed.snapshot(),
    ))
    .unwrap();
    // Three commits after the checkpoint.
    let mut ds = rt
        .block_on(Dataset::open_with(
            url,
            None,
            DatasetOptions::default().with_checkpoint_interval(0),
        ))
        .unwrap();
    for name in ["a", "b", "c"] {
        let t = TaskDef::from_json(&format!(
            r#"{{"name":"{name}","kind":"depth","representation":"relative"}}"#
        ))
        .unwrap();
        rt.block_on(ds.define_task(t)).unwrap();
    }

    let counting = CountingStore::new(Arc::new(LocalFileSystem::new_with_prefix(&dir).unwrap()));
    let loc = || Location {
        store: Arc::new(counting.clone()),
        root: Default::default(),
        url: url.to_owned(),
    };
    let opened = rt
        .block_on(Dataset::open_location(
            loc(),
            None,
            DatasetOptions::default(),
        ))
        .unwrap();
    assert_eq!(opened.snapshot(), ds.snapshot());
    // The hint, the checkpoint, one listing of the log after it, 3 commits.
    let counts = counting.counts();
    assert_eq!(counts.get("list"), Some(&1), "{counts:?}");
    assert_eq!(counting.total(), 6, "{counts:?}");

    // An older version: the checkpoint listing, the checkpoint, one commit.
    counting.reset();
    let v = opened.version() - 2;
    let at = rt
        .block_on(Dataset::open_location(
            loc(),
            Some(v),
            DatasetOptions::default(),
        ))
        .unwrap();
    assert_eq!(at.version(), v);
    assert_eq!(counting.total(), 3, "{:?}", counting.counts());

    // inspect works on it (its speed is measured in BENCHMARKS.md, not here).
    let out = util::must(&["inspect", url, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["image_shards"], 50_000);
    assert_eq!(v["tasks"]["cls"]["shards_labeled"], 50_000);
}

#[path = "../../examples/scale/corpus.rs"]
mod corpus;

/// JFT-300M on paper (`examples/scale` measures the same corpus): 30,000
/// image shards of 10,000 images, 4 tasks, 150,000 data files. Every rank
/// opens it from the checkpoint in 3 requests, plans its share of the
/// whole epoch, and gets its first batch after a number of requests set by
/// the shuffle buffer and the prefetch budget, not by the dataset's size.
#[test]
fn a_300m_image_dataset_opens_plans_and_serves_a_rank() {
    use must_ds::loader::LoaderBuilder;
    let (shards, rows) = (30_000u64, 10_000usize);
    let tmp = tempfile::tempdir().unwrap();
    let rt = util::rt();
    let tpl = corpus::template(&rt, &tmp.path().join("template"), rows, 10);
    let root = tmp.path().join("corpus");
    corpus::write_log(&root, &tpl, shards, 100);
    let counting = CountingStore::new(Arc::new(corpus::Redirect::new(&root, &tpl)));
    let url = root.to_str().unwrap().to_owned();
    let open = || {
        rt.block_on(Dataset::open_location(
            Location {
                store: Arc::new(counting.clone()),
                root: Default::default(),
                url: url.clone(),
            },
            None,
            DatasetOptions::default(),
        ))
        .unwrap()
    };
    let replayed = open();
    assert_eq!(replayed.snapshot().images.len() as u64, shards);
    assert_eq!(replayed.snapshot().labels.len() as u64, 4 * shards);
    rt.block_on(checkpoint::write(
        replayed.store().0,
        replayed.store().1,
        replayed.snapshot(),
    ))
    .unwrap();
    let world = 256;
    let k = 4;
    for rank in [0, world - 1] {
        counting.reset();
        let ds = open();
        assert_eq!(counting.total(), 3, "{:?}", counting.counts());
        assert_eq!(ds.snapshot(), replayed.snapshot());
        let mut b = LoaderBuilder::new(ds)
            .batch_size(32)
            .output_size(32, 24)
            .workers(1)
            .shuffle_row_groups(k)
            .prefetch_bytes(1 << 20)
            .rank(rank, world);
        for t in ["cls", "det", "seg", "depth"] {
            b = b.task(t, false);
        }
        let mut loader = b.build().unwrap();
        // Row groups are dealt to ranks whole, and `Drop` stops every rank
        // at the smallest one's last full batch: at most one row group
        // (1,000 images) a rank is left out of an epoch.
        let per_rank = shards * rows as u64 / world as u64;
        let b = loader.batches_per_epoch();
        assert!(
            b <= per_rank / 32 && b >= (per_rank - 1000) / 32,
            "{b} batches"
        );
        let batch = loader.next().unwrap().unwrap();
        assert_eq!(batch.real(), 32);
        // Opening (3), then per file of the k row groups in the shuffle
        // buffer and the one fetched ahead: its footer and its column chunks.
        let bound = 3 + 2 * 5 * (k as u64 + 1);
        assert!(
            counting.total() <= bound,
            "rank {rank}: {} requests before the first batch (bound {bound}): {:?}",
            counting.total(),
            counting.counts()
        );
    }
}
