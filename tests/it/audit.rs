//! Auditing: statistics on known label distributions, `validate` on
//! datasets broken in each way it must catch, and `render` output.

use std::path::Path;

use must_ds::audit::{class_color, render_sample, RenderOptions};
use must_ds::codec::{labels_to_batch, ClassLabel, DepthMap, Detections, Label, SegMap};
use must_ds::format::{checksum_of, Action, AddLabels, TaskDef};
use must_ds::write::LabelWriter;
use must_ds::{Dataset, Transaction};
use serde_json::Value;

use crate::util;

const CLS: &str = r#"{"name":"cls","kind":"classification","num_classes":4,"class_names":["a","b","c","d"],"encoding":"topk","teacher":"ground-truth"}"#;
const DET: &str = r#"{"name":"det","kind":"detection","num_classes":3,"min_score_written":0.5,"teacher":"ground-truth"}"#;
const SEG: &str =
    r#"{"name":"seg","kind":"segmentation","num_classes":2,"dtype":"u8","teacher":"ground-truth"}"#;
const DEPTH: &str =
    r#"{"name":"depth","kind":"depth","representation":"relative","teacher":"ground-truth"}"#;

fn label(task: &str, i: usize, w: u32) -> Option<Label> {
    match task {
        "cls" if i == 19 => None,
        "cls" => Some(Label::Classification(ClassLabel::TopK {
            classes: vec![(i % 4) as u32, ((i + 1) % 4) as u32],
            probs: vec![0.75, 0.15],
        })),
        "det" => {
            let n = i % 3;
            let mut boxes = vec![[10.0, 10.0, 50.0, 30.0]; n];
            if n == 2 {
                boxes[1] = [20.0, 20.0, w as f32 + 10.0, 40.0]; // reaches outside the image
            }
            Some(Label::Detection(Detections {
                boxes,
                classes: vec![1; n],
                scores: vec![0.9; n],
            }))
        }
        "seg" => Some(Label::Segmentation(SegMap::from_u8(
            2,
            2,
            vec![0, 1, 1, 255],
        ))),
        _ => Some(Label::Depth(DepthMap::from_f32(
            2,
            2,
            &[1.0, 2.0, f32::NAN, 3.0],
        ))),
    }
}

/// 20 real photos in 2 shards (row groups of 4, 4, 2); cls, det and depth on
/// both shards, seg on shard 0 only.
fn labeled(rt: &tokio::runtime::Runtime, dir: &Path) -> Dataset {
    let mut ds = util::dataset_with_images(rt, dir, 20, 10, 4);
    for t in [CLS, DET, SEG, DEPTH] {
        let task = TaskDef::from_json(t).unwrap();
        rt.block_on(ds.define_task(task.clone())).unwrap();
        for shard in [0u64, 1] {
            if task.name == "seg" && shard == 1 {
                continue;
            }
            let mut w = rt
                .block_on(LabelWriter::for_shard(&ds, &task.name, shard))
                .unwrap();
            for g in 0..3 {
                let rg = rt
                    .block_on(ds.read_row_group(shard, g, &[], Some(&["width"])))
                    .unwrap();
                for (j, r) in rg.images.iter().enumerate() {
                    let i = shard as usize * 10 + rg.first_row as usize + j;
                    if let Some(l) = label(&task.name, i, r.width) {
                        w.set(&r.image_id, l).unwrap();
                    }
                }
            }
            rt.block_on(ds.add_label_file(&task.name, shard, w.finish().unwrap(), false))
                .unwrap();
        }
    }
    ds
}

#[test]
fn stats_match_known_distributions() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    labeled(&rt, dir.path());
    let out = util::must(&["inspect", dir.path().to_str().unwrap(), "--stats", "--json"]);
    assert!(out.status.success(), "{}", util::stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows_read"], 20);
    assert_eq!(v["sampled"], false);
    let cls = &v["tasks"]["cls"];
    assert_eq!(cls["labeled"], 19);
    assert_eq!(v["rows_without_labels"]["cls"], 1);
    let top: Vec<(u64, String, u64)> = cls["top1_classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["class"].as_u64().unwrap(),
                c["name"].as_str().unwrap().to_owned(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    // Rows 0..19 labeled: classes 0, 1, 2 five times each, class 3 four times.
    assert_eq!(
        top,
        vec![
            (0, "a".into(), 5),
            (1, "b".into(), 5),
            (2, "c".into(), 5),
            (3, "d".into(), 4)
        ]
    );
    assert!((cls["top1_prob"]["mean"].as_f64().unwrap() - 0.75).abs() < 1e-6);
    assert_eq!(cls["top1_prob_histogram"]["bins"][7], 19);
    assert!((cls["kept_mass"]["p50"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    let h = -(0.75f64 * 0.75f64.log2() + 0.15 * 0.15f64.log2() + 0.1 * 0.1f64.log2());
    assert!((cls["entropy_bits"]["mean"].as_f64().unwrap() - h).abs() < 1e-4);

    let det = &v["tasks"]["det"];
    // i % 3 boxes: 7 rows with 0, 7 with 1, 6 with 2.
    assert_eq!(det["boxes"], 19);
    assert_eq!(det["zero_box_images"], 7);
    assert_eq!(det["outside_image"], 6);
    assert_eq!(det["below_min_score"], 0);
    assert_eq!(det["score_histogram"]["bins"][9], 19);
    assert_eq!(det["classes"][0]["count"], 19);
    assert_eq!(det["width_px"]["min"], 40.0);

    let seg = &v["tasks"]["seg"];
    assert_eq!(seg["labeled"], 10);
    assert_eq!(seg["pixels"], 40);
    assert_eq!(seg["ignore_fraction"], 0.25);
    assert_eq!(seg["classes"][0]["class"], 1);
    assert_eq!(seg["classes"][0]["count"], 20);
    assert_eq!(seg["classes"][1]["count"], 10);
    assert_eq!(seg["map_sizes"][0]["size"], "2x2");
    assert_eq!(
        v["rows_without_labels"]["seg"], 10,
        "shard 1 has no seg labels"
    );
    assert_eq!(
        v["missing"],
        serde_json::json!([{"task": "seg", "shard": 1}])
    );

    let depth = &v["tasks"]["depth"];
    assert_eq!(depth["nan_fraction"], 0.25);
    assert_eq!(depth["values"]["min"], 1.0);
    assert_eq!(depth["values"]["max"], 3.0);
    assert_eq!(depth["values"]["mean"], 2.0);

    // A task, a shard range and a uniform sample, reproducible by seed.
    let args = [
        "inspect",
        dir.path().to_str().unwrap(),
        "--stats",
        "--json",
        "--task",
        "det",
        "--shards",
        "1..1",
        "--sample",
        "4",
        "--seed",
        "3",
    ];
    let a: Value = serde_json::from_slice(&util::must(&args).stdout).unwrap();
    let b: Value = serde_json::from_slice(&util::must(&args).stdout).unwrap();
    assert_eq!(a, b);
    assert_eq!(a["rows_total"], 10);
    assert_eq!(a["rows_read"], 4);
    assert_eq!(a["sampled"], true);
    assert_eq!(
        a["tasks"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["det"]
    );
    // One lone label file, from its own metadata.
    let ds = rt
        .block_on(Dataset::open(dir.path().to_str().unwrap()))
        .unwrap();
    let file = dir
        .path()
        .join(&ds.snapshot().labels[&("det".to_string(), 0)].path);
    let lone: Value = serde_json::from_slice(
        &util::must(&["inspect", file.to_str().unwrap(), "--stats", "--json"]).stdout,
    )
    .unwrap();
    assert_eq!(lone["version"], Value::Null);
    assert_eq!(lone["rows_read"], 10);
    assert_eq!(
        lone["tasks"]["det"]["boxes"], 9,
        "rows 0..10: 3 with 1 box, 3 with 2"
    );
    let text = util::stdout(&util::must(&[
        "inspect",
        dir.path().to_str().unwrap(),
        "--stats",
    ]));
    assert!(
        text.contains("seg shard 1") && text.contains("outside the image 6 boxes"),
        "{text}"
    );
}

/// Runs validate on a broken copy: it fails and names every needle.
fn finds(dir: &Path, needles: &[&str]) -> Value {
    let out = util::must(&["validate", dir.to_str().unwrap()]);
    let text = util::stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "validate must fail: {text} {}",
        util::stderr(&out)
    );
    for n in needles {
        assert!(text.contains(n), "{n:?} not in:\n{text}");
    }
    serde_json::from_slice(&util::must(&["validate", dir.to_str().unwrap(), "--json"]).stdout)
        .unwrap()
}

/// Commits a label file as a tool that does not check values would.
fn commit_unchecked(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    task: &str,
    shard: u64,
    bytes: Vec<u8>,
    labeled: u64,
) {
    let mut ds = rt.block_on(Dataset::open(root.to_str().unwrap())).unwrap();
    let path = format!("labels/{task}/part-unchecked-{shard}.parquet");
    std::fs::write(root.join(&path), &bytes).unwrap();
    let add = AddLabels {
        task: task.into(),
        shard,
        path,
        rows: 10,
        bytes: bytes.len() as u64,
        checksum: checksum_of(&bytes),
        labeled,
        replace: true,
    };
    rt.block_on(ds.commit(Transaction::new("add-labels").with(Action::AddLabels(add))))
        .unwrap();
}

#[test]
fn validate_finds_every_planted_fault_with_its_location() {
    if util::python_with(&["pyarrow"]).is_none() {
        return;
    }
    let rt = util::rt();
    let base = tempfile::tempdir().unwrap();
    let ds = labeled(&rt, base.path());
    let out = util::must(&["validate", base.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "a clean dataset validates: {}",
        util::stdout(&out)
    );
    assert!(util::stdout(&out).contains("no problems"));
    let snap = ds.snapshot().clone();
    let img0 = snap.images[&0].path.clone();
    let cls = |s: u64| snap.labels[&("cls".to_string(), s)].path.clone();
    let ids0 = rt.block_on(ds.read_image_ids(0)).unwrap();
    let fresh = || {
        let d = tempfile::tempdir().unwrap();
        util::copy_dir(base.path(), d.path());
        d
    };

    // A flipped byte inside the image data of shard 0.
    let d = fresh();
    let f = d.path().join(&img0);
    let mut bytes = std::fs::read(&f).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x5a;
    std::fs::write(&f, bytes).unwrap();
    finds(d.path(), &[&img0, "checksum mismatch"]);

    // A truncated label file.
    let d = fresh();
    let f = d.path().join(cls(1));
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    finds(d.path(), &[&cls(1), "size is", "checksum mismatch"]);

    // Label files of shards 0 and 1 swapped.
    let d = fresh();
    let (a, b) = (d.path().join(cls(0)), d.path().join(cls(1)));
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    std::fs::write(&a, bb).unwrap();
    std::fs::write(&b, ba).unwrap();
    let v = finds(
        d.path(),
        &[
            &format!("{}, row 0", cls(0)),
            "not aligned with image shard 0",
            &ids0[0],
        ],
    );
    assert!(v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["file"] == cls(1).as_str() && p["row"] == 0));

    // A missing file.
    let d = fresh();
    std::fs::remove_file(d.path().join(cls(0))).unwrap();
    finds(d.path(), &[&cls(0), "does not exist"]);

    // A mask blob of the wrong size, committed by a tool that checks nothing.
    let d = fresh();
    let seg = TaskDef::from_json(SEG).unwrap();
    let mut labels: Vec<Option<Label>> = (0..10).map(|i| label("seg", i, 0)).collect();
    labels[6] = Some(Label::Segmentation(SegMap::from_u8(2, 2, vec![0, 1, 1])));
    let mut w = parquet::arrow::ArrowWriter::try_new(
        Vec::new(),
        std::sync::Arc::new(must_ds::format::label_schema(&seg, false)),
        None,
    )
    .unwrap();
    for (s, n) in [(0, 4), (4, 4), (8, 2)] {
        w.write(&labels_to_batch(&seg, &ids0[s..s + n], &labels[s..s + n], false).unwrap())
            .unwrap();
        w.flush().unwrap();
    }
    commit_unchecked(&rt, d.path(), "seg", 0, w.into_inner().unwrap(), 10);
    finds(
        d.path(),
        &[
            "part-unchecked-0.parquet, row 6",
            &ids0[6],
            "mask has 3 bytes",
        ],
    );

    // A NaN probability written by pyarrow.
    let d = fresh();
    let shard_file = d.path().join(&img0);
    let out = d.path().join("nan.parquet");
    let script = format!(
        "import sys; sys.path.insert(0, {tools:?})\n\
         from label_writer import read_shard_layout, write_labels\n\
         import json\n\
         ids, groups = read_shard_layout({shard:?})\n\
         labels = [{{'classes': [1], 'probs': [0.5]}} for _ in ids]\n\
         labels[3] = {{'classes': [1], 'probs': [float('nan')]}}\n\
         write_labels(json.loads({task:?}), ids, groups, labels, {out:?})\n",
        tools = util::reference_tools().to_str().unwrap(),
        shard = shard_file.to_str().unwrap(),
        task = CLS,
        out = out.to_str().unwrap()
    );
    util::run_python(&["-c", &script]);
    // The lone file, before it is committed: values are checked from its metadata.
    let lone = util::must(&["validate", out.to_str().unwrap()]);
    assert_eq!(lone.status.code(), Some(1));
    assert!(
        util::stdout(&lone).contains("nan.parquet, row 3"),
        "{}",
        util::stdout(&lone)
    );
    commit_unchecked(&rt, d.path(), "cls", 0, std::fs::read(&out).unwrap(), 10);
    finds(
        d.path(),
        &["part-unchecked-0.parquet, row 3", &ids0[3], "NaN"],
    );
}

#[test]
fn render_draws_boxes_in_their_class_color() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let ds = labeled(&rt, dir.path());
    // Row 1 has one box [10, 10, 50, 30] of class 1.
    let r = rt
        .block_on(render_sample(
            &ds,
            None,
            Some(1),
            &RenderOptions {
                panel_height: 300,
                ..Default::default()
            },
        ))
        .unwrap();
    let det = r
        .panels
        .iter()
        .find(|p| p.task == "det")
        .expect("a detection panel");
    assert!(r.panels.iter().any(|p| p.task == "seg") && r.panels.iter().any(|p| p.task == "depth"));
    let color = class_color(1);
    // The box's left edge, half way down, in picture pixels.
    let x = det.x + (10.0 * det.scale).round() as u32;
    let y = det.y + (25.0 * det.scale).round() as u32;
    assert_eq!(*r.image.get_pixel(x, y), color);
    assert_eq!(*r.image.get_pixel(x + 1, y), color);
    // The same sample found by id gives the same picture.
    let id = rt.block_on(ds.read_image_ids(0)).unwrap()[1].clone();
    let by_id = rt
        .block_on(render_sample(
            &ds,
            Some(&id),
            None,
            &RenderOptions {
                panel_height: 300,
                ..Default::default()
            },
        ))
        .unwrap();
    assert_eq!(by_id.image, r.image);

    // The command writes PNGs that open; a grid holds several samples.
    let png = dir.path().join("one.png");
    let o = util::must(&[
        "render",
        dir.path().to_str().unwrap(),
        "--image-id",
        &id,
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", util::stderr(&o));
    let img = image::open(&png).unwrap();
    assert!(
        img.width() > 3 * 300 && img.height() > 300,
        "{}x{}",
        img.width(),
        img.height()
    );
    let sheet = dir.path().join("grid.png");
    let o = util::must(&[
        "render",
        dir.path().to_str().unwrap(),
        "--grid",
        "4",
        "--height",
        "120",
        "--out",
        sheet.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", util::stderr(&o));
    let g = image::open(&sheet).unwrap();
    assert!(g.width() > img.width() / 2 && g.height() > 2 * 120);
    let o = util::must(&[
        "render",
        dir.path().to_str().unwrap(),
        "--image-id",
        "nope",
        "--out",
        sheet.to_str().unwrap(),
    ]);
    assert!(!o.status.success() && util::stderr(&o).contains("nope"));
}

/// `validate` decodes every embedded image: one that does not decode, and
/// one whose recorded width is wrong, are reported with their file, row and
/// id although every checksum in the log is right (so `--no-decode`
/// passes).
#[test]
fn validate_decodes_images_whose_checksums_are_right() {
    use arrow_array::{Array, RecordBatch, UInt32Array};
    use must_ds::write::{EncodedFile, ImageShardOptions, ImageShardWriter};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let url = root.to_str().unwrap();
    let mut ds = rt.block_on(Dataset::init(url, Default::default())).unwrap();
    let photos = util::photos();
    let opts = || ImageShardOptions {
        row_group_rows: 4,
        ..Default::default()
    };

    // Shard 0: row 5 is a PNG cut short (its header is whole).
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 90]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let png = png.into_inner();
    let mut w = ImageShardWriter::new(opts()).unwrap();
    for i in 0..8 {
        let bytes = &photos[i % photos.len()].1;
        if i == 5 {
            w.add_image("cut-short", "t", &png[..png.len() / 2])
                .unwrap();
        } else {
            w.add_image(&format!("a-{i}"), "t", bytes).unwrap();
        }
    }
    let a = rt
        .block_on(ds.add_image_shard(w.finish().unwrap()))
        .unwrap();

    // Shard 1: row 2 records a width 16 pixels too large, rewritten before
    // the commit so that the log's checksum is of the wrong file.
    let mut w = ImageShardWriter::new(opts()).unwrap();
    let mut sizes = vec![];
    for (i, (_, bytes)) in photos.iter().take(4).enumerate() {
        sizes.push(w.add_image(&format!("b-{i}"), "t", bytes).unwrap());
    }
    let good = w.finish().unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(good.bytes.clone()).unwrap();
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned();
    let schema = reader.schema().clone();
    assert_eq!(reader.metadata().num_row_groups(), 1);
    let batches: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
    let props = WriterProperties::builder()
        .set_key_value_metadata(kv)
        .build();
    let mut out = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).unwrap();
    let mut row = 0;
    for b in &batches {
        let col = b.schema().index_of("width").unwrap();
        let widths = b
            .column(col)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .unwrap();
        let fixed: UInt32Array = (0..widths.len())
            .map(|i| widths.value(i) + if row + i == 2 { 16 } else { 0 })
            .collect();
        row += widths.len();
        let mut cols = b.columns().to_vec();
        cols[col] = std::sync::Arc::new(fixed);
        out.write(&RecordBatch::try_new(b.schema(), cols).unwrap())
            .unwrap();
    }
    let bytes = out.into_inner().unwrap();
    let wrong = EncodedFile {
        bytes: bytes.into(),
        ..good
    };
    let b = rt.block_on(ds.add_image_shard(wrong)).unwrap();

    // The checksums are right: without decoding, nothing is wrong.
    let quick = util::must(&["validate", url, "--no-decode"]);
    assert!(
        quick.status.success(),
        "checksums and sizes match the log: {}",
        util::stdout(&quick)
    );
    let (w2, h2) = sizes[2];
    let v = finds(
        &root,
        &[
            &format!("{}, row 5", a.path),
            "\"cut-short\"",
            "does not decode",
            &format!("{}, row 2", b.path),
            "b-2",
            &format!("decodes to {w2}x{h2} but width/height say {}x{h2}", w2 + 16),
        ],
    );
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "only the two bad images: {problems:?}");
    let text = util::stdout(&util::must(&["validate", url]));
    assert!(!text.contains("checksum mismatch"), "{text}");
}
