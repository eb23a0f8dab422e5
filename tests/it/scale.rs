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
