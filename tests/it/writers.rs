//! Writers and reader: image shards as ingested, label files per kind
//! aligned and read back, Parquet settings as FORMAT.md says.

use bytes::Bytes;
use must_ds::codec::{ClassLabel, DepthMap, Detections, Label, SegMap};
use must_ds::format::TaskDef;
use must_ds::write::{check_label_file, ImageShardOptions, ImageShardWriter, LabelWriter};
use must_ds::Dataset;
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::util;

#[test]
fn image_shards_keep_bytes_read_sizes_from_headers_and_bound_row_groups() {
    let photos = util::photos();
    let opts = ImageShardOptions {
        row_group_bytes: 150_000,
        ..Default::default()
    };
    let mut w = ImageShardWriter::new(opts).unwrap();
    for (name, bytes) in &photos {
        let (width, height) = w.add_image(name, "photos", bytes).unwrap();
        let decoded = image::load_from_memory(bytes).unwrap();
        assert_eq!(
            (width, height),
            (decoded.width(), decoded.height()),
            "{name}"
        );
    }
    w.add_uri("remote-1", "web", "s3://bucket/x.jpg", 640, 480)
        .unwrap();
    assert!(
        w.add_image(&photos[0].0, "photos", &photos[0].1).is_err(),
        "duplicate id in a shard"
    );
    let file = w.finish().unwrap();
    assert_eq!(file.rows, photos.len() as u64 + 1);
    assert!(
        file.row_groups.len() > 2,
        "row groups are cut by bytes: {:?}",
        file.row_groups
    );

    let reader = SerializedFileReader::new(file.bytes.clone()).unwrap();
    let meta = reader.metadata();
    let sizes: Vec<u64> = meta
        .row_groups()
        .iter()
        .map(|g| g.num_rows() as u64)
        .collect();
    assert_eq!(sizes, file.row_groups);
    for g in meta.row_groups() {
        for c in g.columns() {
            let name = c.column_path().string();
            if name == "image" {
                assert_eq!(c.compression(), Compression::UNCOMPRESSED);
                assert!(
                    c.statistics().is_none(),
                    "no statistics on the image column"
                );
                assert!(
                    c.dictionary_page_offset().is_none(),
                    "no dictionary on the image column"
                );
            } else {
                assert!(matches!(c.compression(), Compression::ZSTD(_)), "{name}");
            }
        }
        // A group holds at most the budget plus the image that crossed it.
        let image_bytes: i64 = g
            .columns()
            .iter()
            .filter(|c| c.column_path().string() == "image")
            .map(|c| c.uncompressed_size())
            .sum();
        assert!(image_bytes < 150_000 + 300_000, "{image_bytes}");
    }
    let kv = meta.file_metadata().key_value_metadata().unwrap();
    assert!(kv
        .iter()
        .any(|k| k.key == "must.table" && k.value.as_deref() == Some("images")));
    assert!(kv
        .iter()
        .any(|k| k.key == "must.format_version" && k.value.as_deref() == Some("1")));

    // Bytes come back exactly as given.
    let rt = util::rt();
    let mut ds = rt
        .block_on(Dataset::init("memory://writers-bytes", Default::default()))
        .unwrap();
    let added = rt.block_on(ds.add_image_shard(file)).unwrap();
    let mut seen = 0;
    for g in 0..added.row_groups.len() {
        let rg = rt
            .block_on(ds.read_row_group(added.shard, g, &[], None))
            .unwrap();
        for rec in rg.images {
            match photos.iter().find(|(n, _)| *n == rec.image_id) {
                Some((_, bytes)) => assert_eq!(rec.image.as_deref(), Some(&bytes[..])),
                None => assert_eq!(
                    (rec.uri.as_deref(), rec.width, rec.image.is_none()),
                    (Some("s3://bucket/x.jpg"), 640, true)
                ),
            }
            seen += 1;
        }
    }
    assert_eq!(seen, photos.len() + 1);
    // Projection leaves the image column out.
    let rg = rt
        .block_on(ds.read_row_group(added.shard, 0, &[], Some(&["width"])))
        .unwrap();
    assert!(rg
        .images
        .iter()
        .all(|r| r.image.is_none() && r.width > 0 && r.source.is_none()));
}

fn tasks() -> Vec<TaskDef> {
    [
        r#"{"name":"cls","kind":"classification","num_classes":10,"encoding":"topk","teacher":{"name":"t"}}"#,
        r#"{"name":"dense","kind":"classification","num_classes":3,"encoding":"dense","teacher":{"name":"t"}}"#,
        r#"{"name":"det","kind":"detection","num_classes":4,"min_score_written":0.1,"teacher":{"name":"t"}}"#,
        r#"{"name":"seg","kind":"segmentation","num_classes":5,"dtype":"u8","teacher":{"name":"t"}}"#,
        r#"{"name":"seg16","kind":"segmentation","num_classes":400,"dtype":"u16","ignore_index":65535,"teacher":{"name":"t"}}"#,
        r#"{"name":"depth","kind":"depth","representation":"inverse_relative","teacher":{"name":"t"}}"#,
    ]
    .iter()
    .map(|j| TaskDef::from_json(j).unwrap())
    .collect()
}

/// A label for row `i` of `task`, made from `(w, h)`.
pub fn label_for(task: &TaskDef, i: usize, w: u32, h: u32) -> Label {
    match task.name.as_str() {
        "cls" => Label::Classification(ClassLabel::TopK {
            classes: vec![(i % 10) as u32, ((i + 3) % 10) as u32],
            probs: vec![0.7, 0.2],
        }),
        "dense" => Label::Classification(ClassLabel::Dense(vec![0.5, 0.25, 0.25])),
        "det" => Label::Detection(Detections {
            boxes: vec![[1.0, 2.0, w as f32 / 2.0, h as f32 / 2.0]; i % 3],
            classes: vec![(i % 4) as u32; i % 3],
            scores: vec![0.75; i % 3],
        }),
        "seg" => {
            let (mh, mw) = (h / 8, w / 8);
            let mask = (0..mh * mw)
                .map(|p| if p % 17 == 0 { 255 } else { (p % 5) as u8 })
                .collect();
            Label::Segmentation(
                SegMap::from_u8(mh, mw, mask).with_confidence_probs(&vec![0.5; (mh * mw) as usize]),
            )
        }
        "seg16" => {
            let v: Vec<u16> = (0..12).map(|p| (p * 33 % 400) as u16).collect();
            Label::Segmentation(SegMap::from_u16(3, 4, &v))
        }
        _ => {
            let mut vals: Vec<f32> = (0..20).map(|p| p as f32 / 4.0).collect();
            vals[3] = f32::NAN;
            Label::Depth(DepthMap::from_f32(4, 5, &vals))
        }
    }
}

#[test]
fn label_writers_round_trip_every_kind_aligned_with_nulls() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let mut ds = util::dataset_with_images(&rt, dir.path(), 14, 7, 3);
    assert_eq!(ds.snapshot().images[&0].row_groups, vec![3, 3, 1]);
    for t in tasks() {
        rt.block_on(ds.define_task(t)).unwrap();
    }
    for t in tasks() {
        for shard in [0u64, 1] {
            let mut w = rt
                .block_on(LabelWriter::for_shard(&ds, &t.name, shard))
                .unwrap();
            let rg = (0..3).map(|g| {
                rt.block_on(ds.read_row_group(shard, g, &[], Some(&["width", "height"])))
                    .unwrap()
            });
            let recs: Vec<_> = rg.flat_map(|g| g.images).collect();
            for (i, r) in recs.iter().enumerate() {
                if i % 4 != 3 {
                    w.set(&r.image_id, label_for(&t, i, r.width, r.height))
                        .unwrap();
                }
            }
            let file = w.finish().unwrap();
            assert_eq!(file.labeled, 6);
            assert_eq!(file.row_groups, vec![3, 3, 1]);
            // The file passes the same checks a file from another tool must pass.
            let ids = rt.block_on(ds.read_image_ids(shard)).unwrap();
            let report =
                check_label_file(&t, shard, &ids, &file.row_groups, file.bytes.clone(), "x")
                    .unwrap();
            assert_eq!(report.labeled, 6);
            let blobs = ["mask", "depth", "confidence"];
            let reader = SerializedFileReader::new(file.bytes.clone()).unwrap();
            for c in reader.metadata().row_group(0).columns() {
                let path = c.column_path().string();
                if [
                    "probs.list.item",
                    "scores.list.item",
                    "boxes.list.item.list.item",
                ]
                .contains(&path.as_str())
                {
                    assert!(
                        c.dictionary_page_offset().is_none(),
                        "{path}: floats get no dictionary"
                    );
                }
                if blobs.contains(&c.column_path().string().as_str()) {
                    assert!(
                        matches!(c.compression(), Compression::LZ4_RAW),
                        "{path}: blobs are LZ4_RAW"
                    );
                    assert!(c.statistics().is_none() && c.dictionary_page_offset().is_none());
                }
            }
            rt.block_on(ds.add_label_file(&t.name, shard, file, false))
                .unwrap();
        }
    }
    let names: Vec<String> = tasks().iter().map(|t| t.name.clone()).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let ds = rt
        .block_on(Dataset::open(dir.path().to_str().unwrap()))
        .unwrap();
    for shard in [0u64, 1] {
        let mut row = 0;
        for g in 0..3 {
            let rg = rt
                .block_on(ds.read_row_group(shard, g, &refs, None))
                .unwrap();
            assert_eq!(rg.first_row, row as u64);
            for (j, rec) in rg.images.iter().enumerate() {
                for t in tasks() {
                    let got = &rg.labels[&t.name][j];
                    if row % 4 == 3 {
                        assert!(got.is_none(), "row {row} is unlabeled");
                    } else {
                        let want = label_for(&t, row, rec.width, rec.height);
                        // NaN != NaN: compare depth by bytes, which is what is stored.
                        assert_eq!(
                            format!("{got:?}"),
                            format!("{:?}", Some(want)),
                            "{} row {row}",
                            t.name
                        );
                    }
                }
                row += 1;
            }
        }
    }
    let cov = &ds.snapshot().labels;
    assert_eq!(cov.len(), 12);
    assert!(cov.values().all(|l| l.labeled == 6 && l.rows == 7));
    let _ = Bytes::new();
}

/// Two writers label one shard at once (two workers that met while
/// stealing): the first commit wins; the second, whose dataset had not seen
/// it, uploads its file, is refused at commit, and deletes that file, so the
/// lost race leaves one label file and no orphan.
#[test]
fn a_refused_label_commit_deletes_its_own_file() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let mut ds = util::dataset_with_images(&rt, dir.path(), 6, 6, 3);
    let task = tasks().remove(0);
    rt.block_on(ds.define_task(task.clone())).unwrap();
    let mut late = rt
        .block_on(Dataset::open(dir.path().to_str().unwrap()))
        .unwrap();
    let file = |ds: &Dataset| {
        let mut w = rt
            .block_on(LabelWriter::for_shard(ds, &task.name, 0))
            .unwrap();
        for (i, id) in rt
            .block_on(ds.read_image_ids(0))
            .unwrap()
            .iter()
            .enumerate()
        {
            w.set(id, label_for(&task, i, 8, 8)).unwrap();
        }
        w.finish().unwrap()
    };
    let (first, second) = (file(&ds), file(&late));
    let won = rt
        .block_on(ds.add_label_file(&task.name, 0, first, false))
        .unwrap();
    let err = rt
        .block_on(late.add_label_file(&task.name, 0, second, false))
        .unwrap_err();
    assert!(matches!(err, must_ds::Error::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("already has labels"), "{err}");
    let files: Vec<String> = util::list_dir(&dir.path().join("labels").join(&task.name))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, vec![won.path.rsplit('/').next().unwrap().to_owned()]);
    assert!(util::must(&["validate", dir.path().to_str().unwrap()])
        .status
        .success());
}
