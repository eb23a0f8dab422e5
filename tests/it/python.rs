//! Both directions with Python: pyarrow and DuckDB read what Rust wrote;
//! Rust accepts what the pyarrow reference writer (and pyarrow's own type
//! choices: `element` list children, dictionary strings, large binaries) wrote.

use std::path::Path;

use must_ds::codec::Label;
use must_ds::format::{checksum_of, Action, AddImages, TaskDef};
use must_ds::write::LabelWriter;
use must_ds::{Dataset, Transaction};
use serde_json::Value;

use crate::util;
use crate::writers::label_for;

const TASKS: &[&str] = &[
    r#"{"name":"cls","kind":"classification","num_classes":10,"encoding":"topk","teacher":"ground-truth"}"#,
    r#"{"name":"dense","kind":"classification","num_classes":3,"encoding":"dense","teacher":"ground-truth"}"#,
    r#"{"name":"det","kind":"detection","num_classes":4,"teacher":"ground-truth"}"#,
    r#"{"name":"seg","kind":"segmentation","num_classes":5,"dtype":"u8","teacher":"ground-truth"}"#,
    r#"{"name":"seg16","kind":"segmentation","num_classes":400,"dtype":"u16","ignore_index":65535,"teacher":"ground-truth"}"#,
    r#"{"name":"depth","kind":"depth","representation":"relative","teacher":"ground-truth"}"#,
];

#[test]
fn pyarrow_and_duckdb_read_what_rust_wrote() {
    if util::python_with(&["pyarrow", "duckdb"]).is_none() {
        return;
    }
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let mut ds = util::dataset_with_images(&rt, dir.path(), 10, 5, 2);
    for t in TASKS {
        let t = TaskDef::from_json(t).unwrap();
        rt.block_on(ds.define_task(t.clone())).unwrap();
        for shard in [0, 1] {
            let mut w = rt
                .block_on(LabelWriter::for_shard(&ds, &t.name, shard))
                .unwrap();
            for g in 0..3 {
                let rg = rt
                    .block_on(ds.read_row_group(shard, g, &[], Some(&["width", "height"])))
                    .unwrap();
                for (j, r) in rg.images.iter().enumerate() {
                    let row = rg.first_row as usize + j;
                    if row != 2 {
                        w.set(&r.image_id, label_for(&t, row, r.width, r.height))
                            .unwrap();
                    }
                }
            }
            rt.block_on(ds.add_label_file(&t.name, shard, w.finish().unwrap(), false))
                .unwrap();
        }
    }
    let out = util::run_python(&[
        util::fixture_tools()
            .join("check_interop.py")
            .to_str()
            .unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["errors"], Value::Array(vec![]), "{v}");
    assert_eq!(v["rows"], 10);
    for t in ["cls", "dense", "det", "seg", "seg16", "depth"] {
        assert_eq!(v["tasks"][t]["joined"], 10, "{t}: {v}");
        assert_eq!(v["tasks"][t]["labeled"], 8, "{t}: {v}");
    }
}

#[test]
fn rust_accepts_the_python_reference_writer_and_pyarrow_types() {
    if util::python_with(&["pyarrow"]).is_none() {
        return;
    }
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let mut ds = util::dataset_with_images(&rt, &root, 7, 7, 3);
    let shard_file = root.join(&ds.snapshot().images[&0].path);
    for t in TASKS {
        let task = TaskDef::from_json(t).unwrap();
        rt.block_on(ds.define_task(task.clone())).unwrap();
        let out = dir.path().join(format!("{}.parquet", task.name));
        util::python_example_labels(&shard_file, t, &out);
        let o = util::must(&[
            "add-labels",
            root.to_str().unwrap(),
            "--task",
            &task.name,
            "--shard",
            "0",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}: {}", task.name, util::stderr(&o));
    }
    let ds = rt.block_on(Dataset::open(root.to_str().unwrap())).unwrap();
    let names: Vec<&str> = ["cls", "dense", "det", "seg", "seg16", "depth"].to_vec();
    let mut rows = vec![];
    for g in 0..3 {
        let rg = rt.block_on(ds.read_row_group(0, g, &names, None)).unwrap();
        for (j, rec) in rg.images.iter().enumerate() {
            rows.push((
                rec.clone(),
                names
                    .iter()
                    .map(|n| rg.labels[*n][j].clone())
                    .collect::<Vec<_>>(),
            ));
        }
    }
    assert_eq!(rows.len(), 7);
    for (i, (rec, labels)) in rows.iter().enumerate() {
        if i % 5 == 4 {
            assert!(labels.iter().all(|l| l.is_none()), "row {i} is unlabeled");
            continue;
        }
        let (w, h) = (rec.width, rec.height);
        match &labels[2] {
            Some(Label::Detection(d)) => {
                assert_eq!(d.boxes[0], [0.0, 0.0, w as f32 / 2.0, h as f32 / 2.0])
            }
            other => panic!("{other:?}"),
        }
        match &labels[3] {
            Some(Label::Segmentation(m)) => {
                assert_eq!((m.height, m.width), ((h / 8).max(1), (w / 8).max(1)));
                assert!(m.confidence.as_ref().unwrap().iter().all(|c| *c == 200));
                assert_eq!(m.mask[1], 1);
            }
            other => panic!("{other:?}"),
        }
        match &labels[4] {
            Some(Label::Segmentation(m)) => assert_eq!(m.values(2)[1], 1),
            other => panic!("{other:?}"),
        }
        match &labels[5] {
            Some(Label::Depth(d)) => assert_eq!(d.to_f32()[0], 1.0),
            other => panic!("{other:?}"),
        }
    }

    // An image shard written by pyarrow with dictionary `source` and large binaries.
    let py_shard = root.join("images/part-from-pyarrow.parquet");
    let script = format!(
        "import pyarrow as pa, pyarrow.parquet as pq\n\
         t = pq.read_table({src:?})\n\
         t = t.set_column(1, 'source', t.column('source').dictionary_encode())\n\
         t = t.set_column(2, 'image', t.column('image').cast(pa.large_binary()))\n\
         t = t.replace_schema_metadata({{'must.format_version': '1', 'must.table': 'images'}})\n\
         pq.write_table(t, {dst:?}, row_group_size=4)\n",
        src = shard_file.to_str().unwrap(),
        dst = py_shard.to_str().unwrap()
    );
    util::run_python(&["-c", &script]);
    let bytes = std::fs::read(&py_shard).unwrap();
    let mut ds = ds;
    let commit = rt
        .block_on(ds.commit(
            Transaction::new("ingest").with(Action::AddImages(AddImages {
                shard: 0,
                path: "images/part-from-pyarrow.parquet".into(),
                rows: 7,
                bytes: bytes.len() as u64,
                checksum: checksum_of(&bytes),
                row_groups: vec![4, 3],
                sources: [("test".to_string(), 7)].into(),
            })),
        ))
        .unwrap();
    let Action::AddImages(added) = &commit.actions[0] else {
        panic!()
    };
    let rg = rt
        .block_on(ds.read_row_group(added.shard, 0, &[], None))
        .unwrap();
    assert_eq!(rg.images.len(), 4);
    for (a, b) in rg.images.iter().zip(&rows) {
        assert_eq!(a, &b.0, "pyarrow's copy reads the same");
    }
    assert!(Path::new(&py_shard).exists());
}

// The worked example of a teacher in Python (tools/reference/python_teacher.py, through
// the Python package's checked writer) is tested with the package, in
// python/tests/test_teachers.py.
