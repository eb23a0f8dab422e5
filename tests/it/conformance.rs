//! One conformance suite for the store, written once and run against a local
//! folder, `memory://` and a real S3 server (moto) on loopback.

use std::time::Duration;

use must_ds::codec::{ClassLabel, Label};
use must_ds::format::TaskDef;
use must_ds::write::{ImageShardOptions, ImageShardWriter, LabelWriter};
use must_ds::{Dataset, DatasetOptions, Error};

use crate::util;

fn shard(tag: &str, n: usize) -> must_ds::write::EncodedFile {
    let photos = util::photos();
    let opts = ImageShardOptions {
        row_group_rows: 2,
        ..Default::default()
    };
    let mut w = ImageShardWriter::new(opts).unwrap();
    for i in 0..n {
        w.add_image(&format!("{tag}-{i}"), "suite", &photos[i % photos.len()].1)
            .unwrap();
    }
    w.finish().unwrap()
}

fn labels(
    ds: &Dataset,
    rt: &tokio::runtime::Runtime,
    shard: u64,
    p: f32,
) -> must_ds::write::EncodedFile {
    let mut w = rt
        .block_on(LabelWriter::for_shard(ds, "cls", shard))
        .unwrap();
    for id in w.image_ids().to_vec() {
        w.set(
            &id,
            Label::Classification(ClassLabel::TopK {
                classes: vec![2],
                probs: vec![p],
            }),
        )
        .unwrap();
    }
    w.finish().unwrap()
}

/// Commit, conflict, race, checkpoint, open at version, writers, reader, vacuum.
pub fn suite(url: &str) {
    let rt = util::rt();
    let opts = DatasetOptions::default().with_checkpoint_interval(3);
    let mut ds = rt
        .block_on(Dataset::init_with(url, Default::default(), opts.clone()))
        .unwrap();
    assert!(matches!(
        rt.block_on(Dataset::init(url, Default::default())),
        Err(Error::DatasetExists { .. })
    ));
    let task = TaskDef::from_json(r#"{"name":"cls","kind":"classification","num_classes":4,"encoding":"topk","teacher":"ground-truth"}"#).unwrap();
    rt.block_on(ds.define_task(task)).unwrap();

    // Two writers race for the same version: both commit, ids differ.
    let mut other = rt
        .block_on(Dataset::open_with(url, None, opts.clone()))
        .unwrap();
    let a = rt.block_on(ds.add_image_shard(shard("a", 3))).unwrap();
    let b = rt.block_on(other.add_image_shard(shard("b", 5))).unwrap();
    assert_eq!((a.shard, b.shard), (0, 1));
    rt.block_on(ds.refresh()).unwrap();
    assert_eq!(ds.snapshot(), other.snapshot());

    // Labels; a second file without replace is a conflict; replace works.
    for s in [0, 1] {
        let f = labels(&ds, &rt, s, 0.5);
        rt.block_on(ds.add_label_file("cls", s, f, false)).unwrap();
    }
    let f = labels(&other, &rt, 0, 0.25);
    assert!(matches!(
        rt.block_on(other.add_label_file("cls", 0, f, false)),
        Err(Error::Conflict { .. })
    ));
    let f = labels(&ds, &rt, 0, 0.75);
    rt.block_on(ds.add_label_file("cls", 0, f, true)).unwrap();

    // Reader: images and labels of a row group.
    let rg = rt
        .block_on(ds.read_row_group(1, 2, &["cls"], None))
        .unwrap();
    assert_eq!(
        rg.images
            .iter()
            .map(|r| r.image_id.as_str())
            .collect::<Vec<_>>(),
        ["b-4"]
    );
    assert!(
        matches!(&rg.labels["cls"][0], Some(Label::Classification(ClassLabel::TopK { probs, .. })) if probs == &vec![0.5])
    );
    let rg = rt
        .block_on(ds.read_row_group(0, 0, &["cls"], None))
        .unwrap();
    assert!(
        matches!(&rg.labels["cls"][0], Some(Label::Classification(ClassLabel::TopK { probs, .. })) if probs == &vec![0.75])
    );

    // Checkpoints were written (interval 3) and opening agrees with replay.
    let latest = rt.block_on(Dataset::open(url)).unwrap();
    assert_eq!(latest.snapshot(), ds.snapshot());
    let v = ds.version();
    assert!(v >= 6, "{v}");
    let history: Vec<_> = (0..=v)
        .map(|k| {
            rt.block_on(Dataset::open_at(url, k))
                .unwrap()
                .snapshot()
                .clone()
        })
        .collect();
    assert_eq!(history[v as usize], *ds.snapshot());
    assert_eq!((history[1].images.len(), history[2].images.len()), (0, 1));
    assert!(matches!(
        rt.block_on(Dataset::open_at(url, v + 1)),
        Err(Error::NoSuchVersion { .. })
    ));
    let (store, root) = ds.store();
    let cps: Vec<_> = rt
        .block_on(futures::TryStreamExt::try_collect::<Vec<_>>(
            store.list(Some(&root.clone().join("_must").join("checkpoint"))),
        ))
        .unwrap();
    assert!(!cps.is_empty(), "checkpoints on {url}");

    // The writer that lost the conflict above deleted its own file: no
    // orphan of it is left under labels/cls.
    let live: Vec<String> = ds
        .snapshot()
        .labels
        .values()
        .map(|l| l.path.clone())
        .chain(
            history
                .iter()
                .flat_map(|h| h.labels.values().map(|l| l.path.clone())),
        )
        .collect();
    let listed: Vec<_> = rt
        .block_on(futures::TryStreamExt::try_collect::<Vec<_>>(
            store.list(Some(&root.clone().join("labels").join("cls"))),
        ))
        .unwrap();
    for m in &listed {
        let rel = m
            .location
            .as_ref()
            .trim_start_matches(root.as_ref())
            .trim_start_matches('/');
        assert!(live.iter().any(|p| p == rel), "{rel} is an orphan on {url}");
    }

    // Vacuum: orphans go once old enough (one planted here, as a killed
    // writer leaves). Referenced files never go,
    // not even the labels the replace removed (older versions need them).
    // A file must-ds never names (a user's) stays whatever its age.
    let orphan = "labels/cls/part-0b9e6f4e-2f4c-4a43-9a55-3c1a3a1f0d27.parquet";
    rt.block_on(ds.put_data_file(orphan, bytes::Bytes::from_static(b"orphan")))
        .unwrap();
    rt.block_on(ds.put_data_file(
        "labels/cls/notes.parquet",
        bytes::Bytes::from_static(b"mine"),
    ))
    .unwrap();
    let r = rt
        .block_on(ds.vacuum(Duration::from_secs(3600), false))
        .unwrap();
    assert!(r.deleted.is_empty(), "{r:?}");
    assert_eq!(r.too_young.len(), 1, "{r:?}");
    assert!(r.too_young.contains(&orphan.to_string()));
    let r = rt.block_on(ds.vacuum(Duration::ZERO, true)).unwrap();
    let orphans = r.deleted.clone();
    assert_eq!(orphans, vec![orphan.to_string()]);
    assert!(
        rt.block_on(ds.get_file(orphan)).is_ok(),
        "a dry run deletes nothing"
    );
    let r = rt.block_on(ds.vacuum(Duration::ZERO, false)).unwrap();
    assert_eq!(r.deleted, orphans);
    assert_eq!(r.foreign, vec!["labels/cls/notes.parquet".to_string()]);
    assert!(rt.block_on(ds.get_file("labels/cls/notes.parquet")).is_ok());
    assert_eq!(r.referenced, 5);
    for snap in &history {
        for path in snap
            .images
            .values()
            .map(|a| &a.path)
            .chain(snap.labels.values().map(|l| &l.path))
        {
            assert!(
                rt.block_on(ds.get_file(path)).is_ok(),
                "{path} survives vacuum"
            );
        }
    }
    assert!(rt.block_on(ds.get_file(orphan)).is_err());
}

#[test]
fn local_folder() {
    let dir = tempfile::tempdir().unwrap();
    suite(dir.path().join("ds").to_str().unwrap());
}

#[test]
fn memory() {
    suite("memory://conformance/ds");
}

#[test]
fn s3_on_a_real_server() {
    if util::python_with(crate::s3::MOTO).is_none() {
        return;
    }
    let bucket = crate::s3::bucket("conformance");
    suite(&format!("{bucket}/some/prefix"));
}

#[test]
fn commands_work_on_s3_and_never_print_secrets() {
    if util::python_with(crate::s3::MOTO).is_none() {
        return;
    }
    let bucket = crate::s3::bucket("commands");
    let root = format!("{bucket}/corpus");
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in util::photos().iter().take(3) {
        std::fs::write(dir.path().join(format!("{name}.jpg")), bytes).unwrap();
    }
    let ok = |args: &[&str]| {
        let o = util::must(args);
        assert!(o.status.success(), "{args:?}: {}", util::stderr(&o));
        let text = format!("{}{}", util::stdout(&o), util::stderr(&o));
        assert!(
            !text.contains(&std::env::var("AWS_SECRET_ACCESS_KEY").unwrap()),
            "a secret in {text}"
        );
        text
    };
    ok(&["init", &root]);
    let out = ok(&[
        "ingest",
        &root,
        "--from",
        dir.path().to_str().unwrap(),
        "--source",
        "s3test",
        "--workers",
        "1",
    ]);
    assert!(out.contains("ingested 3 images"), "{out}");
    let out = ok(&["inspect", &root]);
    assert!(
        out.contains("s3://commands/corpus") && out.contains("3 rows"),
        "{out}"
    );
    assert!(ok(&["validate", &root]).contains("no problems"));
    ok(&["log", &root]);
    let out = ok(&["vacuum", &root, "--older-than", "0s", "--dry-run"]);
    assert!(out.contains("would delete 0 orphaned file(s)"), "{out}");
}
