//! Store: locations, commits, conflicts, checkpoints, versions.

use must_ds::format::{Action, AddImages, TaskDef};
use must_ds::store::{layout, open_location};
use must_ds::write::{ImageShardOptions, ImageShardWriter, LabelWriter};
use must_ds::{Dataset, DatasetOptions, Error, Transaction};

use crate::util;

fn one_image_shard(seed: usize) -> must_ds::write::EncodedFile {
    let photos = util::photos();
    let mut w = ImageShardWriter::new(ImageShardOptions::default()).unwrap();
    w.add_image(&format!("p-{seed}"), "test", &photos[seed % photos.len()].1)
        .unwrap();
    w.finish().unwrap()
}

fn cls_task() -> TaskDef {
    TaskDef::from_json(r#"{"name":"cls","kind":"classification","num_classes":5,"encoding":"topk","teacher":"ground-truth"}"#).unwrap()
}

#[test]
fn opens_plain_paths_file_urls_and_memory() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ds");
    let path = path.to_str().unwrap();
    rt.block_on(Dataset::init(path, Default::default()))
        .unwrap();
    let by_url = rt
        .block_on(Dataset::open(&format!("file://{path}")))
        .unwrap();
    assert_eq!(by_url.version(), 0);
    assert!(matches!(
        rt.block_on(Dataset::init(path, Default::default())),
        Err(Error::DatasetExists { .. })
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        rt.block_on(Dataset::open(empty.path().to_str().unwrap())),
        Err(Error::NotADataset { .. })
    ));

    let mut mem = rt
        .block_on(Dataset::init("memory://store-test/a/b", Default::default()))
        .unwrap();
    rt.block_on(mem.add_image_shard(one_image_shard(0)))
        .unwrap();
    // Another open of the same memory:// name sees the same store.
    let again = rt
        .block_on(Dataset::open("memory://store-test/a/b"))
        .unwrap();
    assert_eq!(again.version(), 1);
    assert_eq!(again.snapshot().images.len(), 1);
    assert!(matches!(
        rt.block_on(Dataset::open("memory://store-test/other")),
        Err(Error::NotADataset { .. })
    ));
}

#[test]
fn cloud_urls_build_from_the_environment_without_leaking_secrets() {
    // Building a store does no I/O; the shown URL never has credentials.
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "super-secret-value");
    std::env::set_var("AWS_REGION", "us-east-1");
    let loc = open_location("s3://bucket/some/prefix", false).unwrap();
    assert_eq!(loc.url, "s3://bucket/some/prefix");
    assert_eq!(loc.root.as_ref(), "some/prefix");
    assert!(!format!("{loc:?}").contains("super-secret-value"));
    assert!(matches!(
        open_location("ftp://x/y", false),
        Err(Error::InvalidUrl { .. })
    ));
}

#[test]
fn shard_ids_are_assigned_at_commit_and_writers_rebase() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    rt.block_on(Dataset::init(url, Default::default())).unwrap();
    // Two handles at the same version race for version 1.
    let mut a = rt.block_on(Dataset::open(url)).unwrap();
    let mut b = rt.block_on(Dataset::open(url)).unwrap();
    let sa = rt.block_on(a.add_image_shard(one_image_shard(1))).unwrap();
    let sb = rt.block_on(b.add_image_shard(one_image_shard(2))).unwrap();
    assert_eq!((sa.shard, sb.shard), (0, 1));
    assert_eq!(
        b.version(),
        2,
        "b lost the race for version 1, rebased and committed 2"
    );
    let fresh = rt.block_on(Dataset::open(url)).unwrap();
    assert_eq!(fresh.snapshot(), b.snapshot());
}

#[test]
fn real_conflicts_are_typed_errors() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let mut ds = util::dataset_with_images(&rt, dir.path(), 4, 4, 2);
    rt.block_on(ds.define_task(cls_task())).unwrap();
    // The same definition again is not a conflict; another one is.
    assert!(rt.block_on(ds.define_task(cls_task())).unwrap().is_none());
    let mut other = cls_task();
    if let must_ds::format::TaskKind::Classification { num_classes, .. } = &mut other.kind {
        *num_classes = 6;
    }
    assert!(matches!(
        rt.block_on(ds.define_task(other)),
        Err(Error::Conflict { .. })
    ));

    let mut stale = rt
        .block_on(Dataset::open(dir.path().to_str().unwrap()))
        .unwrap();
    let label = |ds: &Dataset| {
        let mut w = rt.block_on(LabelWriter::for_shard(ds, "cls", 0)).unwrap();
        w.set_row(
            0,
            must_ds::codec::Label::Classification(must_ds::codec::ClassLabel::TopK {
                classes: vec![1],
                probs: vec![0.9],
            }),
        )
        .unwrap();
        w.finish().unwrap()
    };
    rt.block_on(ds.add_label_file("cls", 0, label(&ds), false))
        .unwrap();
    // A writer that has not seen those labels loses the race and finds a real conflict.
    let err = rt
        .block_on(stale.add_label_file("cls", 0, label(&ds), false))
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    // With replace it goes through and removes the old file from the dataset.
    let old = ds.snapshot().labels[&("cls".to_string(), 0)].path.clone();
    rt.block_on(stale.add_label_file("cls", 0, label(&ds), true))
        .unwrap();
    assert!(!stale.snapshot().is_live(&old));
    // Labels for a shard that does not exist.
    let err = rt
        .block_on(ds.add_label_file("cls", 99, label(&ds), false))
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownShard { shard: 99, .. }),
        "{err}"
    );
    let txn = Transaction::new("bad").with(Action::Remove(must_ds::format::Remove {
        path: "images/nope.parquet".into(),
    }));
    assert!(matches!(
        rt.block_on(ds.commit(txn)),
        Err(Error::Conflict { .. })
    ));
}

#[test]
fn checkpoints_make_opening_skip_old_log_files() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let opts = DatasetOptions::default().with_checkpoint_interval(4);
    let mut ds = rt
        .block_on(Dataset::init_with(url, Default::default(), opts.clone()))
        .unwrap();
    rt.block_on(ds.define_task(cls_task())).unwrap();
    for i in 0..9 {
        rt.block_on(ds.add_image_shard(one_image_shard(i))).unwrap();
    }
    assert_eq!(ds.version(), 10);
    for v in [4, 8] {
        assert!(
            dir.path().join(layout::checkpoint_file(v)).is_file(),
            "checkpoint {v}"
        );
    }
    let hint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(layout::LAST_CHECKPOINT)).unwrap())
            .unwrap();
    assert_eq!(hint["version"], 8);
    let replayed: Vec<_> = (0..=10)
        .map(|v| {
            rt.block_on(Dataset::open_at(url, v))
                .unwrap()
                .snapshot()
                .clone()
        })
        .collect();

    // Break a log file the checkpoint covers: opening the latest version
    // does not read it (checkpoint 8 + logs 9, 10), opening version 2 does.
    let log2 = dir.path().join(layout::log_file(2));
    let saved = std::fs::read(&log2).unwrap();
    std::fs::write(&log2, b"{ not json").unwrap();
    let latest = rt.block_on(Dataset::open(url)).unwrap();
    assert_eq!(latest.snapshot(), &replayed[10]);
    assert_eq!(
        rt.block_on(Dataset::open_at(url, 9)).unwrap().snapshot(),
        &replayed[9]
    );
    let err = rt.block_on(Dataset::open_at(url, 3)).unwrap_err();
    assert!(
        matches!(&err, Error::CorruptLog { file, .. } if file.ends_with("00000000000000000002.json")),
        "{err}"
    );
    std::fs::write(&log2, saved).unwrap();

    // Without checkpoints and hint, the full replay gives the same state.
    std::fs::remove_dir_all(dir.path().join("_must/checkpoint")).unwrap();
    std::fs::remove_file(dir.path().join(layout::LAST_CHECKPOINT)).unwrap();
    assert_eq!(
        rt.block_on(Dataset::open(url)).unwrap().snapshot(),
        &replayed[10]
    );
    // Version numbers past the end are reported as such.
    assert!(matches!(
        rt.block_on(Dataset::open_at(url, 11)),
        Err(Error::NoSuchVersion {
            version: 11,
            latest: 10
        })
    ));
    let shards: Vec<u64> = replayed[10].images.keys().copied().collect();
    assert_eq!(shards, (0..9).collect::<Vec<_>>());
    let _ = AddImages::clone(&replayed[10].images[&0]);
}

/// A damaged checkpoint (cut short, overwritten, another version's, or a
/// damaged hint) is skipped: opening replays the log and gets the same
/// state as with a good checkpoint, at the latest and at older versions.
#[test]
fn a_damaged_checkpoint_falls_back_to_replaying_the_log() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let opts = DatasetOptions::default().with_checkpoint_interval(4);
    let mut ds = rt
        .block_on(Dataset::init_with(url, Default::default(), opts))
        .unwrap();
    rt.block_on(ds.define_task(cls_task())).unwrap();
    for i in 0..9 {
        rt.block_on(ds.add_image_shard(one_image_shard(i))).unwrap();
    }
    assert_eq!(ds.version(), 10);
    let want: Vec<_> = (0..=10)
        .map(|v| {
            rt.block_on(Dataset::open_at(url, v))
                .unwrap()
                .snapshot()
                .clone()
        })
        .collect();
    assert_eq!(want[10].images.len(), 9);
    let cp8 = dir.path().join(layout::checkpoint_file(8));
    let cp4 = dir.path().join(layout::checkpoint_file(4));
    let hint = dir.path().join(layout::LAST_CHECKPOINT);
    let good = std::fs::read(&cp8).unwrap();
    let good_hint = std::fs::read(&hint).unwrap();
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("cut short", good[..good.len() / 2].to_vec()),
        ("overwritten", vec![0x5a; good.len()]),
        ("empty", vec![]),
        (
            "checkpoint 4 under the name of 8",
            std::fs::read(&cp4).unwrap(),
        ),
    ];
    for (what, bytes) in damages {
        std::fs::write(&cp8, &bytes).unwrap();
        let latest = rt
            .block_on(Dataset::open(url))
            .unwrap_or_else(|e| panic!("checkpoint 8 {what}: {e}"));
        assert_eq!(latest.version(), 10, "checkpoint 8 {what}");
        assert_eq!(latest.snapshot(), &want[10], "checkpoint 8 {what}");
        for v in [8, 9] {
            let old = rt
                .block_on(Dataset::open_at(url, v))
                .unwrap_or_else(|e| panic!("checkpoint 8 {what}, version {v}: {e}"));
            assert_eq!(old.snapshot(), &want[v as usize], "checkpoint 8 {what}");
        }
    }
    std::fs::write(&cp8, &good).unwrap();
    // A damaged hint: the newest checkpoint is found by listing.
    for bad in [&b"{ not json"[..], b"{\"version\": 99}", b""] {
        std::fs::write(&hint, bad).unwrap();
        let latest = rt.block_on(Dataset::open(url)).unwrap_or_else(|e| {
            panic!("hint {:?}: {e}", String::from_utf8_lossy(bad));
        });
        assert_eq!(latest.snapshot(), &want[10]);
    }
    std::fs::write(&hint, good_hint).unwrap();
    // Both a damaged hint and a damaged checkpoint.
    std::fs::write(&hint, b"garbage").unwrap();
    std::fs::write(&cp8, b"PAR1 garbage PAR1").unwrap();
    assert_eq!(
        rt.block_on(Dataset::open(url)).unwrap().snapshot(),
        &want[10]
    );
}
