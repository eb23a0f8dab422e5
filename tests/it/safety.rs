//! Nothing lost, nothing let in: each test plants what a user would meet
//! (another dataset where the demo goes, a folder of photos where `init`
//! goes, a hand-edited log, a decompression bomb, a cut JPEG, two ingests
//! at once) and checks that must-ds refuses, reports or skips it without
//! losing or altering anything. Images and ingests: safety_ingest.rs.

use std::path::Path;
use std::sync::Arc;

use must_ds::format::{Action, AddImages, AddLabels, Remove, TaskDef};
use must_ds::store::{layout, retry::FaultyStore, Location};
use must_ds::write::{ImageShardOptions, ImageShardWriter};
use must_ds::{Dataset, DatasetOptions, Error, Transaction};

use crate::util;

pub(crate) const CLS: &str = r#"{"name": "cls", "kind": "classification", "num_classes": 4,
    "encoding": "topk", "teacher": {"name": "t"}}"#;

pub(crate) fn photos_dir(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in util::photos().into_iter().take(n) {
        std::fs::write(dir.join(format!("{name}.jpg")), bytes).unwrap();
    }
}

#[test]
fn demo_never_replaces_a_dataset_or_files_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x");
    let xs = x.to_str().unwrap();
    let photos = dir.path().join("photos");
    photos_dir(&photos, 3);
    let ok = |args: &[&str]| {
        let o = util::must(args);
        assert!(o.status.success(), "{args:?}: {}", util::stderr(&o));
    };
    ok(&["init", xs, "--name", "precious"]);
    ok(&[
        "ingest",
        xs,
        "--from",
        photos.to_str().unwrap(),
        "--source",
        "p",
    ]);
    let before = util::tree(&x);
    let o = util::must(&["demo", xs, "--images", "8"]);
    assert!(!o.status.success());
    let err = util::stderr(&o);
    assert!(
        err.contains("precious") && err.contains("did not make"),
        "{err}"
    );
    assert_eq!(util::tree(&x), before, "the user's dataset is untouched");

    // The demo replaces its own dataset, but not once somebody relabeled
    // it or left a file in it.
    let d = dir.path().join("demo");
    let ds = d.to_str().unwrap();
    ok(&["demo", ds, "--images", "8"]);
    let o = util::must(&["demo", ds, "--images", "8"]);
    assert!(o.status.success(), "{}", util::stderr(&o));
    assert!(util::stdout(&o).contains("replacing the previous demo dataset"));
    std::fs::write(d.join("images/notes.txt"), b"mine").unwrap();
    let before = util::tree(&d);
    let o = util::must(&["demo", ds, "--images", "8"]);
    assert!(!o.status.success());
    assert!(
        util::stderr(&o).contains("notes.txt"),
        "{}",
        util::stderr(&o)
    );
    assert_eq!(util::tree(&d), before);
    // A folder of anything else.
    let o = util::must(&["demo", photos.to_str().unwrap(), "--images", "8"]);
    assert!(!o.status.success());
    assert_eq!(util::list_dir(&photos).len(), 3);
}

#[test]
fn init_refuses_a_location_that_is_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x");
    photos_dir(&x.join("images"), 2);
    let before = util::tree(&x);
    let o = util::must(&["init", x.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = util::stderr(&o);
    assert!(err.contains("not empty") && err.contains("images"), "{err}");
    assert_eq!(util::tree(&x), before);
    assert!(!x.join("_must").exists());
    // The same on an object store.
    let rt = util::rt();
    let loc = must_ds::store::open_location("memory://safety-init/p", false).unwrap();
    use object_store::ObjectStoreExt;
    rt.block_on(loc.store.put(
        &loc.root.clone().join("mine.txt"),
        bytes::Bytes::from_static(b"x").into(),
    ))
    .unwrap();
    let e = rt
        .block_on(Dataset::init("memory://safety-init/p", Default::default()))
        .unwrap_err();
    assert!(matches!(e, Error::LocationNotEmpty { .. }), "{e}");
    assert!(rt
        .block_on(Dataset::init(
            "memory://safety-init/p/sub",
            Default::default()
        ))
        .is_ok());
}

/// A dataset with 4 images in one shard and labels of `cls`.
fn labeled(rt: &tokio::runtime::Runtime, root: &Path) -> Dataset {
    let mut ds = util::dataset_with_images(rt, root, 4, 4, 2);
    rt.block_on(ds.define_task(TaskDef::from_json(CLS).unwrap()))
        .unwrap();
    let mut w = rt
        .block_on(must_ds::write::LabelWriter::for_shard(&ds, "cls", 0))
        .unwrap();
    w.set(
        "img-00001",
        must_ds::codec::Label::Classification(must_ds::codec::ClassLabel::TopK {
            classes: vec![1],
            probs: vec![0.9],
        }),
    )
    .unwrap();
    rt.block_on(ds.add_label_file("cls", 0, w.finish().unwrap(), false))
        .unwrap();
    ds
}

#[test]
fn a_non_canonical_path_in_the_log_is_refused_and_vacuum_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let rs = root.to_str().unwrap();
    let rt = util::rt();
    let ds = labeled(&rt, &root);
    let shard = ds.snapshot().images[&0].path.clone();
    // Edit the log as a user (or another tool) might.
    let log = root.join(layout::log_file(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(&shard));
    let odd = shard.replace("images/", "images//");
    std::fs::write(&log, text.replace(&shard, &odd)).unwrap();
    let e = rt.block_on(Dataset::open(rs)).unwrap_err().to_string();
    assert!(
        e.contains("canonical") && e.contains("00000000000000000001.json"),
        "{e}"
    );
    let o = util::must(&["validate", rs]);
    assert!(!o.status.success());
    let before = util::tree(&root);
    let o = util::must(&["vacuum", rs, "--older-than", "0s"]);
    assert!(!o.status.success(), "{}", util::stdout(&o));
    assert_eq!(util::tree(&root), before, "vacuum deleted nothing");

    // Writers never commit one: refused before anything is written.
    std::fs::write(&log, text).unwrap();
    let mut ds = rt.block_on(Dataset::open(rs)).unwrap();
    let v = ds.version();
    for path in [
        "images//part-x.parquet",
        "images/../images/a.parquet",
        "/abs.parquet",
        "labels/cls/a.parquet",
    ] {
        let txn = Transaction::new("test").with(Action::AddImages(AddImages {
            shard: 0,
            path: path.into(),
            rows: 1,
            bytes: 1,
            checksum: "crc32c:00000000".into(),
            row_groups: vec![1],
            sources: Default::default(),
        }));
        let e = rt.block_on(ds.commit(txn)).unwrap_err();
        assert!(matches!(e, Error::InvalidCommit { .. }), "{path}: {e}");
    }
    assert_eq!(rt.block_on(Dataset::open(rs)).unwrap().version(), v);
}

#[test]
fn vacuum_keeps_files_must_ds_did_not_write_links_and_uri_targets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let rs = root.to_str().unwrap();
    let rt = util::rt();
    let mut ds = labeled(&rt, &root);
    // A user's photos copied into images/, a link to a folder outside,
    // and a link named like a shard.
    photos_dir(&root.join("images/mine"), 2);
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let victim = "part-11111111-2222-4333-8444-555555555555.parquet";
    std::fs::write(outside.join(victim), b"precious").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("labels/linked")).unwrap();
    std::os::unix::fs::symlink(
        outside.join(victim),
        root.join("images/part-66666666-2222-4333-8444-555555555555.parquet"),
    )
    .unwrap();
    // A shard whose rows are stored by uri, pointing at a file under images/.
    let target = "images/part-77777777-2222-4333-8444-555555555555.parquet";
    std::fs::write(root.join(target), b"referenced by uri").unwrap();
    let mut w = ImageShardWriter::new(ImageShardOptions::default()).unwrap();
    w.add_uri("by-uri", "test", target, 10, 10).unwrap();
    rt.block_on(ds.add_image_shard(w.finish().unwrap()))
        .unwrap();
    // A real orphan: a writer's file no commit names.
    let orphan = layout::new_image_file();
    std::fs::write(root.join(&orphan), b"orphan").unwrap();

    let o = util::must(&["vacuum", rs, "--older-than", "0s", "--json"]);
    assert!(o.status.success(), "{}", util::stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["deleted"], serde_json::json!([orphan]), "{r}");
    let foreign: Vec<String> = serde_json::from_value(r["foreign"].clone()).unwrap();
    assert!(
        foreign.iter().any(|f| f.starts_with("images/mine/"))
            && foreign.contains(&"labels/linked".to_string())
            && foreign.iter().any(|f| f.starts_with("images/part-6666")),
        "{foreign:?}"
    );
    assert_eq!(std::fs::read(outside.join(victim)).unwrap(), b"precious");
    assert!(root.join(target).exists(), "a uri target stays");
    assert_eq!(util::list_dir(&root.join("images/mine")).len(), 2);
    assert!(std::fs::symlink_metadata(root.join("labels/linked")).is_ok());
    let o = util::must(&["validate", rs, "--no-decode"]);
    assert!(o.status.success(), "{}", util::stdout(&o));
}

#[test]
fn commits_that_no_reader_could_open_are_refused_and_leave_the_log_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let rs = root.to_str().unwrap();
    let rt = util::rt();
    let mut ds = labeled(&rt, &root);
    let snap = ds.snapshot().clone();
    let shard = snap.images[&0].clone();
    let labels = snap.labels[&("cls".to_string(), 0)].clone();
    let new_labels = |path: String| AddLabels {
        path,
        replace: false,
        ..labels.clone()
    };
    let bad_task = TaskDef::from_json(
        r#"{"name": "bad", "kind": "classification", "num_classes": 0, "encoding": "topk", "teacher": {"name": "t"}}"#,
    );
    let mut cases: Vec<(&str, Vec<Action>)> = vec![
        (
            "row groups that do not add up",
            vec![Action::AddImages(AddImages {
                path: layout::new_image_file(),
                row_groups: vec![2, 1],
                ..shard.clone()
            })],
        ),
        (
            "an image shard whose path is already live",
            vec![Action::AddImages(shard.clone())],
        ),
        (
            "two labels for one (task, shard)",
            vec![
                Action::AddLabels(AddLabels {
                    replace: true,
                    ..new_labels(layout::new_label_file("cls"))
                }),
                Action::AddLabels(AddLabels {
                    replace: true,
                    ..new_labels(layout::new_label_file("cls"))
                }),
            ],
        ),
        (
            "a remove of a shard, then labels for it",
            vec![
                Action::Remove(Remove {
                    path: shard.path.clone(),
                }),
                Action::AddLabels(new_labels(layout::new_label_file("cls"))),
            ],
        ),
        (
            "labels with more rows than the shard",
            vec![Action::AddLabels(AddLabels {
                rows: 5,
                replace: true,
                ..new_labels(layout::new_label_file("cls"))
            })],
        ),
        (
            "labels under another task's folder",
            vec![Action::AddLabels(AddLabels {
                replace: true,
                ..new_labels(layout::new_label_file("seg"))
            })],
        ),
    ];
    if let Ok(t) = bad_task {
        cases.push(("a task that fails validation", vec![Action::Task(t)]));
    }
    let log_files = || util::list_dir(&root.join("_must/log")).len();
    let n = log_files();
    for (what, actions) in cases {
        let mut txn = Transaction::new("test");
        txn.actions = actions;
        let e = rt.block_on(ds.commit(txn));
        assert!(e.is_err(), "{what} was committed");
        assert_eq!(log_files(), n, "{what}: the log is unchanged");
        assert_eq!(rt.block_on(Dataset::open(rs)).unwrap().snapshot(), &snap);
    }

    // Property: random transactions of valid and invalid actions; any that
    // commit accepts opens, and any it refuses leaves the log untouched.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut accepted = 0;
    for _ in 0..60 {
        let snap = ds.snapshot().clone();
        let live: Vec<AddImages> = snap.images.values().cloned().collect();
        let mut actions = vec![];
        for _ in 0..1 + next(3) {
            let s = &live[next(live.len() as u64) as usize];
            let rows = if next(4) == 0 { s.rows + 1 } else { s.rows };
            let a = match next(6) {
                0 => Action::AddImages(AddImages {
                    path: layout::new_image_file(),
                    ..s.clone()
                }),
                1 => Action::AddImages(AddImages {
                    path: if next(2) == 0 {
                        s.path.clone()
                    } else {
                        layout::new_image_file()
                    },
                    rows: s.rows + next(2),
                    ..s.clone()
                }),
                2 | 3 => Action::AddLabels(AddLabels {
                    shard: s.shard,
                    rows,
                    replace: next(2) == 0,
                    ..new_labels(layout::new_label_file("cls"))
                }),
                4 if live.len() > 1 => Action::Remove(Remove {
                    path: s.path.clone(),
                }),
                _ => Action::Remove(Remove {
                    path: layout::new_image_file(),
                }),
            };
            actions.push(a);
        }
        let mut txn = Transaction::new("random");
        txn.actions = actions;
        let before = log_files();
        match rt.block_on(ds.commit(txn)) {
            Ok(_) => {
                accepted += 1;
                let opened = rt.block_on(Dataset::open(rs)).unwrap();
                assert_eq!(opened.snapshot(), ds.snapshot());
            }
            Err(_) => {
                assert_eq!(log_files(), before);
                assert_eq!(rt.block_on(Dataset::open(rs)).unwrap().snapshot(), &snap);
            }
        }
    }
    assert!(
        accepted > 5,
        "the random transactions test both sides ({accepted} accepted)"
    );
}

#[test]
fn a_commit_whose_create_was_retried_below_is_recognised_not_doubled() {
    let rt = util::rt();
    let inner = must_ds::store::open_location("memory://safety-txn/ds", true).unwrap();
    let loc = |lost: bool| {
        let base: Arc<dyn object_store::ObjectStore> = inner.store.clone();
        let store: Arc<dyn object_store::ObjectStore> = if lost {
            Arc::new(FaultyStore::new(base, 0.0, 1).with_lost_create_answers())
        } else {
            base
        };
        Location {
            store,
            root: inner.root.clone(),
            url: "memory://safety-txn/ds".into(),
        }
    };
    rt.block_on(Dataset::init_location(
        loc(false),
        Default::default(),
        DatasetOptions::default(),
    ))
    .unwrap();
    let mut ds = rt
        .block_on(Dataset::open_location(
            loc(true),
            None,
            DatasetOptions::default(),
        ))
        .unwrap();
    let mut w = ImageShardWriter::new(ImageShardOptions::default()).unwrap();
    w.add_image("a", "test", &util::photos()[0].1).unwrap();
    let added = rt
        .block_on(ds.add_image_shard(w.finish().unwrap()))
        .unwrap();
    assert_eq!((added.shard, ds.version()), (0, 1));
    let fresh = rt
        .block_on(Dataset::open_location(
            loc(false),
            None,
            DatasetOptions::default(),
        ))
        .unwrap();
    assert_eq!(fresh.version(), 1, "committed once");
    assert_eq!(fresh.snapshot().images.len(), 1);
    let c = &rt.block_on(fresh.history()).unwrap()[1];
    assert!(c.transaction.is_some());
}

#[test]
fn local_commits_and_data_files_are_flushed_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let rt = util::rt();
    let before = must_ds::store::local_syncs();
    let mut ds = rt
        .block_on(Dataset::init(
            dir.path().to_str().unwrap(),
            Default::default(),
        ))
        .unwrap();
    let after_init = must_ds::store::local_syncs();
    // The commit file, _must/log, _must and the root.
    assert!(after_init - before >= 4, "{}", after_init - before);
    let mut w = ImageShardWriter::new(ImageShardOptions::default()).unwrap();
    w.add_image("a", "test", &util::photos()[0].1).unwrap();
    rt.block_on(ds.add_image_shard(w.finish().unwrap()))
        .unwrap();
    // The data file and images/, then the commit and _must/log.
    assert!(must_ds::store::local_syncs() - after_init >= 4);
}
