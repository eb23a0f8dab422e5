//! Bad input gets a clear error naming the file (and row or image id) and
//! leaves the dataset exactly as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, ListBuilder, UInt32Builder};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use must_ds::codec::{labels_to_batch, ClassLabel, Label, SegMap};
use must_ds::format::TaskDef;
use must_ds::Dataset;
use parquet::arrow::ArrowWriter;

use crate::util;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ids: Vec<String>,
    rt: tokio::runtime::Runtime,
}

fn cls() -> TaskDef {
    TaskDef::from_json(r#"{"name":"cls","kind":"classification","num_classes":5,"encoding":"topk","teacher":"ground-truth"}"#).unwrap()
}

fn seg() -> TaskDef {
    TaskDef::from_json(r#"{"name":"seg","kind":"segmentation","num_classes":3,"dtype":"u8","teacher":"ground-truth"}"#).unwrap()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let rt = util::rt();
    let mut ds = util::dataset_with_images(&rt, &root, 8, 8, 3);
    rt.block_on(ds.define_task(cls())).unwrap();
    rt.block_on(ds.define_task(seg())).unwrap();
    let ids = rt.block_on(ds.read_image_ids(0)).unwrap();
    Fixture {
        _dir: dir,
        root,
        ids,
        rt,
    }
}

fn good_cls(i: usize) -> Option<Label> {
    Some(Label::Classification(ClassLabel::TopK {
        classes: vec![(i % 5) as u32],
        probs: vec![0.8],
    }))
}

/// Writes batches, one row group each, to `path`.
fn write(path: &Path, batches: &[RecordBatch]) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(f, batches[0].schema(), None).unwrap();
    for b in batches {
        w.write(b).unwrap();
        w.flush().unwrap();
    }
    w.close().unwrap();
}

/// Label file of `task` with the given ids and labels, cut into `groups`.
fn label_file(
    fx: &Fixture,
    name: &str,
    task: &TaskDef,
    ids: &[String],
    labels: &[Option<Label>],
    groups: &[usize],
) -> PathBuf {
    let path = fx.root.parent().unwrap().join(name);
    let mut batches = vec![];
    let mut start = 0;
    for &n in groups {
        batches.push(
            labels_to_batch(
                task,
                &ids[start..start + n],
                &labels[start..start + n],
                false,
            )
            .unwrap(),
        );
        start += n;
    }
    write(&path, &batches);
    path
}

/// Runs add-labels and checks: it fails, stderr names all of `needles`, and the dataset is untouched.
fn refused(fx: &Fixture, task: &str, shard: &str, file: &Path, needles: &[&str]) {
    let before = util::tree(&fx.root);
    let out = util::must(&[
        "add-labels",
        fx.root.to_str().unwrap(),
        "--task",
        task,
        "--shard",
        shard,
        file.to_str().unwrap(),
    ]);
    let err = util::stderr(&out);
    assert!(
        !out.status.success(),
        "accepted {}: {}",
        file.display(),
        util::stdout(&out)
    );
    for n in needles {
        assert!(err.contains(n), "error {err:?} does not mention {n:?}");
    }
    assert!(
        before == util::tree(&fx.root),
        "the dataset changed after a refused file"
    );
}

#[test]
fn misaligned_label_files_are_aligned_and_unknown_ids_refused() {
    let fx = fixture();
    let labels: Vec<_> = (0..8).map(good_cls).collect();
    // The good file is accepted (so the refusals below are about the change made).
    let ok = label_file(&fx, "ok.parquet", &cls(), &fx.ids, &labels, &[3, 3, 2]);
    let mut other = fx.ids.clone();
    other[4] = "zzz-not-in-shard".into();
    let f = label_file(
        &fx,
        "other-ids.parquet",
        &cls(),
        &other,
        &labels,
        &[3, 3, 2],
    );
    refused(
        &fx,
        "cls",
        "0",
        &f,
        &[
            "other-ids.parquet",
            "row 4",
            "zzz-not-in-shard",
            "not in image shard 0",
        ],
    );
    // Another order, other row groups, missing rows: matched by image_id and
    // committed as an aligned copy (tests/it/align.rs has the engines' files).
    let mut swapped = fx.ids.clone();
    swapped.swap(0, 1);
    let mut swapped_labels = labels.clone();
    swapped_labels.swap(0, 1);
    let f = label_file(
        &fx,
        "order.parquet",
        &cls(),
        &swapped,
        &swapped_labels,
        &[3, 3, 2],
    );
    let f2 = label_file(&fx, "groups.parquet", &cls(), &fx.ids, &labels, &[4, 4]);
    let f3 = label_file(
        &fx,
        "short.parquet",
        &cls(),
        &fx.ids[..7],
        &labels[..7],
        &[3, 3, 1],
    );
    for (f, missing) in [(&f, 0), (&f2, 0), (&f3, 1)] {
        let out = util::must(&[
            "add-labels",
            fx.root.to_str().unwrap(),
            "--task",
            "cls",
            "--shard",
            "0",
            "--replace",
            f.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", util::stderr(&out));
        let text = util::stdout(&out);
        assert!(
            text.contains(&format!("{missing} image id(s) of them without a label")),
            "{text}"
        );
    }
    refused(&fx, "cls", "42", &ok, &["image shard 42 does not exist"]);
    let out = util::must(&[
        "add-labels",
        fx.root.to_str().unwrap(),
        "--task",
        "cls",
        "--shard",
        "0",
        "--replace",
        ok.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", util::stderr(&out));
}

#[test]
fn wrong_types_and_values_are_refused_with_row_and_image_id() {
    let fx = fixture();
    // probs as List<Float64>.
    let mut c = ListBuilder::new(UInt32Builder::new());
    let mut p = ListBuilder::new(Float64Builder::new());
    for _ in 0..8 {
        c.values().append_value(1);
        c.append(true);
        p.values().append_value(0.5);
        p.append(true);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("image_id", DataType::Utf8, false),
        Field::new("classes", c.finish().data_type().clone(), true),
        Field::new("probs", p.finish().data_type().clone(), true),
    ]));
    let mut batches = vec![];
    for (s, n) in [(0, 3), (3, 3), (6, 2)] {
        let mut c = ListBuilder::new(UInt32Builder::new());
        let mut p = ListBuilder::new(Float64Builder::new());
        for _ in 0..n {
            c.values().append_value(1);
            c.append(true);
            p.values().append_value(0.5);
            p.append(true);
        }
        let ids = StringArray::from_iter_values(&fx.ids[s..s + n]);
        let cols: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(c.finish()), Arc::new(p.finish())];
        batches.push(RecordBatch::try_new(schema.clone(), cols).unwrap());
    }
    let f = fx.root.parent().unwrap().join("f64.parquet");
    write(&f, &batches);
    refused(
        &fx,
        "cls",
        "0",
        &f,
        &["f64.parquet", "\"probs\"", "List<Float64>", "List<Float32>"],
    );

    let with = |row: usize, label: Label, name: &str, task: &TaskDef| {
        let mut labels: Vec<_> = (0..8).map(good_cls).collect();
        if task.name == "seg" {
            labels = (0..8)
                .map(|_| {
                    Some(Label::Segmentation(SegMap::from_u8(
                        2,
                        2,
                        vec![0, 1, 2, 255],
                    )))
                })
                .collect();
        }
        labels[row] = Some(label);
        label_file(&fx, name, task, &fx.ids, &labels, &[3, 3, 2])
    };
    let topk = |classes: Vec<u32>, probs: Vec<f32>| {
        Label::Classification(ClassLabel::TopK { classes, probs })
    };
    let f = with(2, topk(vec![1], vec![f32::NAN]), "nan.parquet", &cls());
    refused(
        &fx,
        "cls",
        "0",
        &f,
        &["nan.parquet", "row 2", &fx.ids[2], "NaN"],
    );
    let f = with(5, topk(vec![1], vec![-0.25]), "negative.parquet", &cls());
    refused(
        &fx,
        "cls",
        "0",
        &f,
        &["negative.parquet", "row 5", &fx.ids[5], "-0.25"],
    );
    let f = with(6, topk(vec![9], vec![0.5]), "class.parquet", &cls());
    refused(
        &fx,
        "cls",
        "0",
        &f,
        &[
            "class.parquet",
            "row 6",
            &fx.ids[6],
            "class id 9",
            "num_classes 5",
        ],
    );
    let f = with(7, topk(vec![1, 2], vec![0.5]), "lengths.parquet", &cls());
    refused(
        &fx,
        "cls",
        "0",
        &f,
        &["lengths.parquet", "row 7", "2 entries"],
    );
    let bad_mask = Label::Segmentation(SegMap::from_u8(2, 3, vec![0; 5]));
    let f = with(1, bad_mask, "mask.parquet", &seg());
    refused(
        &fx,
        "seg",
        "0",
        &f,
        &["mask.parquet", "row 1", &fx.ids[1], "5 bytes", "2x3"],
    );
    let bad_value = Label::Segmentation(SegMap::from_u8(1, 2, vec![0, 7]));
    let f = with(3, bad_value, "maskvalue.parquet", &seg());
    refused(
        &fx,
        "seg",
        "0",
        &f,
        &["maskvalue.parquet", "row 3", "mask value 7"],
    );
    // A file of another kind for this task.
    let f = with(0, topk(vec![1], vec![0.5]), "kind.parquet", &cls());
    refused(
        &fx,
        "seg",
        "0",
        &f,
        &["kind.parquet", "missing column \"mask\""],
    );
}

#[test]
fn truncated_parquet_is_refused() {
    let fx = fixture();
    let labels: Vec<_> = (0..8).map(good_cls).collect();
    let f = label_file(&fx, "trunc.parquet", &cls(), &fx.ids, &labels, &[3, 3, 2]);
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    refused(&fx, "cls", "0", &f, &["trunc.parquet", "parquet"]);
}

#[test]
fn invalid_task_names_are_refused() {
    let fx = fixture();
    let before = util::tree(&fx.root);
    for name in ["Bad Name", "x/y", ""] {
        let out = util::must(&[
            "task",
            "define",
            fx.root.to_str().unwrap(),
            "--name",
            name,
            "--kind",
            "depth",
        ]);
        assert!(!out.status.success());
        assert!(
            util::stderr(&out).contains("invalid task name"),
            "{}",
            util::stderr(&out)
        );
    }
    let json = fx.root.parent().unwrap().join("task.json");
    std::fs::write(
        &json,
        r#"{"name":"UPPER","kind":"depth","representation":"relative"}"#,
    )
    .unwrap();
    let out = util::must(&[
        "task",
        "define",
        fx.root.to_str().unwrap(),
        json.to_str().unwrap(),
    ]);
    assert!(
        util::stderr(&out).contains("task.json") && util::stderr(&out).contains("UPPER"),
        "{}",
        util::stderr(&out)
    );
    assert!(before == util::tree(&fx.root));
}

#[test]
fn unknown_actions_and_newer_protocols_are_refused_by_name() {
    let fx = fixture();
    let root = fx.root.to_str().unwrap();
    let ds = fx.rt.block_on(Dataset::open(root)).unwrap();
    let next = ds.version() + 1;
    let log = fx.root.join(format!("_must/log/{next:020}.json"));
    let body = format!(
        r#"{{"version":{next},"timestamp":"t","operation":"x","writer":"y","actions":[{{"add_keypoints":{{"path":"k"}}}}]}}"#
    );
    std::fs::write(&log, body).unwrap();
    let out = util::must(&["inspect", root]);
    let err = util::stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{next:020}.json")) && err.contains("add_keypoints"),
        "{err}"
    );
    let body = format!(
        r#"{{"version":{next},"actions":[{{"protocol":{{"reader_version":2,"writer_version":2,"features":[]}}}}]}}"#
    );
    std::fs::write(&log, body).unwrap();
    let err = util::stderr(&util::must(&["inspect", root]));
    assert!(
        err.contains(&format!("{next:020}.json")) && err.contains("reader version 2"),
        "{err}"
    );
    let body = format!(
        r#"{{"version":{next},"actions":[{{"protocol":{{"reader_version":1,"writer_version":1,"features":["deletion-vectors"]}}}}]}}"#
    );
    std::fs::write(&log, body).unwrap();
    let err = util::stderr(&util::must(&["inspect", root]));
    assert!(err.contains("deletion-vectors"), "{err}");
    // The versions before it still open.
    assert!(
        util::must(&["inspect", root, "--version", &(next - 1).to_string()])
            .status
            .success()
    );
}

#[test]
fn files_that_are_not_images_are_skipped_or_fail_with_strict() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(photos.join("sub")).unwrap();
    for (name, bytes) in util::photos().iter().take(3) {
        std::fs::write(photos.join("sub").join(format!("{name}.jpg")), bytes).unwrap();
    }
    std::fs::write(photos.join("notes.txt"), "not an image").unwrap();
    std::fs::write(photos.join("broken.jpg"), b"\xff\xd8\xff").unwrap();
    let root = dir.path().join("ds");
    let root = root.to_str().unwrap();
    assert!(util::must(&["init", root]).status.success());
    let before = util::tree(Path::new(root));
    let out = util::must(&[
        "ingest",
        root,
        "--from",
        photos.to_str().unwrap(),
        "--source",
        "web",
        "--strict",
    ]);
    assert!(!out.status.success());
    let err = util::stderr(&out);
    assert!(
        err.contains("broken.jpg") || err.contains("notes.txt"),
        "{err}"
    );
    assert!(
        before == util::tree(Path::new(root)),
        "strict ingest committed something"
    );
    let out = util::must(&[
        "ingest",
        root,
        "--from",
        photos.to_str().unwrap(),
        "--source",
        "web",
    ]);
    assert!(out.status.success(), "{}", util::stderr(&out));
    let text = util::stdout(&out);
    assert!(text.contains("ingested 3 images"), "{text}");
    assert!(
        text.contains("skipped 2 file(s)")
            && text.contains("notes.txt: unrecognized header")
            && text.contains("broken.jpg"),
        "{text}"
    );
}
