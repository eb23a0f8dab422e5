//! Nothing lost, nothing let in, for images: decompression bombs and cut
//! JPEGs are corrupt data everywhere, `validate` compares row counts with
//! the log, image ids stay unique across ingests and odd file names, and
//! concurrent `--skip-existing` ingests store each image once.

use std::collections::BTreeMap;

use must_ds::format::TaskDef;
use must_ds::ingest::{collect_inputs, ingest, IngestOptions, InputData, InputImage};
use must_ds::loader::{CorruptPolicy, LoaderBuilder};
use must_ds::store::layout;
use must_ds::Dataset;

use crate::safety::{photos_dir, CLS};
use crate::util;

/// A real JPEG whose frame header claims `w`×`h` pixels.
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut j = util::photos()[0].1.clone();
    let sof = (2..j.len() - 9)
        .find(|&i| j[i] == 0xFF && (0xC0..=0xC2).contains(&j[i + 1]))
        .expect("a frame header");
    j[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    j[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    j
}

#[test]
fn decompression_bombs_and_cut_jpegs_are_corrupt_data_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let rs = root.to_str().unwrap();
    let rt = util::rt();
    let bomb = jpeg_claiming(30000, 30000);
    let photo = util::photos()[1].1.clone();
    let cut = photo[..photo.len() * 2 / 5].to_vec();
    // Ingest refuses the bomb from its header; the cut JPEG's header is fine.
    let files = dir.path().join("in");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("bomb.jpg"), &bomb).unwrap();
    std::fs::write(files.join("cut.jpg"), &cut).unwrap();
    std::fs::write(files.join("ok.jpg"), &photo).unwrap();
    assert!(util::must(&["init", rs]).status.success());
    let o = util::must(&[
        "ingest",
        rs,
        "--from",
        files.to_str().unwrap(),
        "--source",
        "test",
    ]);
    assert!(o.status.success(), "{}", util::stderr(&o));
    let out = util::stdout(&o);
    assert!(
        out.contains("bomb.jpg") && out.contains("over the limit"),
        "{out}"
    );
    // Planted with a raised limit, as a writer that does not check would.
    let o = util::must(&[
        "--max-image-pixels",
        "1000000000",
        "ingest",
        rs,
        "--from",
        files.to_str().unwrap(),
        "--source",
        "raised",
    ]);
    assert!(o.status.success(), "{}", util::stderr(&o));
    let mut ds = rt.block_on(Dataset::open(rs)).unwrap();
    rt.block_on(ds.define_task(TaskDef::from_json(CLS).unwrap()))
        .unwrap();

    // validate: as strict as the loader.
    let o = util::must(&["validate", rs, "--json"]);
    assert!(!o.status.success());
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let problems = r["problems"].as_array().unwrap();
    let about = |id: &str| {
        problems
            .iter()
            .find(|p| p["image_id"] == id)
            .map(|p| p["what"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert!(about("raised/bomb.jpg").contains("over the limit"), "{r}");
    assert!(about("raised/cut.jpg").contains("does not decode"), "{r}");
    assert!(about("test/cut.jpg").contains("does not decode"));
    assert!(about("test/ok.jpg").is_empty() && about("raised/ok.jpg").is_empty());
    // ... and passes with the limit raised (the cut JPEG still fails).
    let o = util::must(&[
        "--max-image-pixels",
        "1000000000",
        "validate",
        rs,
        "--json",
        "--no-decode",
    ]);
    assert!(o.status.success(), "{}", util::stdout(&o));

    // The loader: fail naming the image, or skip it.
    let b = |p| {
        LoaderBuilder::open(rs, None)
            .task("cls", false)
            .batch_size(1)
            .output_size(32, 32)
            .on_corrupt(p)
    };
    let errs: Vec<String> = b(CorruptPolicy::Fail)
        .build()
        .unwrap()
        .filter_map(|r| r.err())
        .map(|e| e.to_string())
        .collect();
    assert!(
        errs.iter()
            .any(|e| e.contains("raised/bomb.jpg") && e.contains("over the limit"))
            || errs.iter().any(|e| e.contains("cut.jpg")),
        "{errs:?}"
    );
    let mut l = b(CorruptPolicy::Skip).build().unwrap();
    let n: usize = l
        .by_ref()
        .map(|b| b.unwrap().padding.iter().filter(|p| !**p).count())
        .sum();
    let skipped: Vec<String> = l
        .skipped()
        .iter()
        .filter_map(|s| s.image_id.clone())
        .collect();
    assert_eq!(n, 2, "the two good photos: {skipped:?}");
    assert!(
        skipped.contains(&"raised/bomb.jpg".to_string()),
        "{skipped:?}"
    );
    assert_eq!(skipped.len(), 3, "{skipped:?}");

    // render: an error naming it, not gigabytes.
    let o = util::must(&[
        "render",
        rs,
        "--image-id",
        "raised/bomb.jpg",
        "--out",
        dir.path().join("r.png").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        util::stderr(&o).contains("over the limit"),
        "{}",
        util::stderr(&o)
    );
    // A teacher's preprocessing refuses it too.
    let mut s = must_ds::teacher::Scratch::default();
    let p = must_ds::teacher::TeacherParams::from_task(&TaskDef::from_json(CLS).unwrap()).unwrap();
    let mut buf = vec![0f32; 3 * 224 * 224];
    let e = must_ds::teacher::preprocess(&bomb, &p, &mut s, &mut buf).unwrap_err();
    assert!(e.contains("over the limit"), "{e}");
}

#[test]
fn validate_compares_row_counts_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let rs = root.to_str().unwrap();
    let rt = util::rt();
    // One shard of 6 rows in row groups of 2.
    util::dataset_with_images(&rt, &root, 6, 6, 2);
    let log = root.join(layout::log_file(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["actions"][0]["add_images"]["row_groups"],
        serde_json::json!([2, 2, 2])
    );
    let edit = |row_groups: serde_json::Value, rows: u64| {
        let mut v = v.clone();
        v["actions"][0]["add_images"]["row_groups"] = row_groups;
        v["actions"][0]["add_images"]["rows"] = rows.into();
        v["actions"][0]["add_images"]["sources"] = serde_json::json!({"test": rows});
        std::fs::write(&log, serde_json::to_vec(&v).unwrap()).unwrap();
        let o = util::must(&["validate", rs, "--no-decode"]);
        assert!(!o.status.success());
        util::stdout(&o)
    };
    let out = edit(serde_json::json!([2, 4]), 6);
    assert!(
        out.contains("the file has 3 row groups, the log says 2"),
        "{out}"
    );
    let out = edit(serde_json::json!([2, 2, 1]), 5);
    assert!(out.contains("the file has 6 rows, the log says 5"), "{out}");
    let out = edit(serde_json::json!([2, 1, 3]), 6);
    assert!(
        out.contains("row group 1 has 2 rows, the log says 1"),
        "{out}"
    );
}

#[test]
fn image_ids_stay_unique_across_ingests_and_odd_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let rs = root.to_str().unwrap();
    let files = dir.path().join("in");
    photos_dir(&files, 4);
    // A name that is not UTF-8, a link to a photo, a broken link.
    use std::os::unix::ffi::OsStrExt;
    let latin1 = files.join(std::ffi::OsStr::from_bytes(b"caf\xe9.jpg"));
    std::fs::write(&latin1, &util::photos()[0].1).unwrap();
    std::os::unix::fs::symlink(files.join("chelsea.jpg"), files.join("link.jpg")).unwrap();
    std::os::unix::fs::symlink(files.join("gone.jpg"), files.join("broken.jpg")).unwrap();
    let got = collect_inputs(&files, "s").unwrap();
    let ids: Vec<&str> = got.images.iter().map(|i| i.image_id.as_str()).collect();
    assert!(ids.contains(&"s/link.jpg"), "links are followed: {ids:?}");
    assert_eq!(ids.len(), 5, "{ids:?}");
    let reasons: BTreeMap<String, String> = got
        .skipped
        .iter()
        .map(|s| (s.file.clone(), s.reason.clone()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.values().any(|r| r.contains("not valid UTF-8")),
        "{reasons:?}"
    );
    assert!(
        reasons.values().any(|r| r.contains("broken symbolic link")),
        "{reasons:?}"
    );
    // The CLI says so, and fails on them with --strict.
    assert!(util::must(&["init", rs]).status.success());
    let o = util::must(&[
        "ingest",
        rs,
        "--from",
        files.to_str().unwrap(),
        "--source",
        "in",
        "--strict",
    ]);
    assert!(!o.status.success());
    let o = util::must(&[
        "ingest",
        rs,
        "--from",
        files.to_str().unwrap(),
        "--source",
        "in",
    ]);
    assert!(o.status.success(), "{}", util::stderr(&o));
    assert!(
        util::stdout(&o).contains("not valid UTF-8"),
        "{}",
        util::stdout(&o)
    );

    // A second plain ingest of the same folder duplicates ids: validate
    // reports them, with both places.
    let o = util::must(&[
        "ingest",
        rs,
        "--from",
        files.to_str().unwrap(),
        "--source",
        "in",
    ]);
    assert!(o.status.success());
    let o = util::must(&["validate", rs, "--no-decode", "--json"]);
    assert!(!o.status.success());
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let dups: Vec<&serde_json::Value> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["what"].as_str().unwrap().contains("duplicate image_id"))
        .collect();
    assert_eq!(dups.len(), 5, "{r}");
    assert!(
        dups.iter().any(|p| p["image_id"] == "in/link.jpg"),
        "{dups:?}"
    );
}

#[test]
fn concurrent_skip_existing_ingests_store_each_image_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let rs = root.to_str().unwrap();
    let rt = util::rt();
    rt.block_on(Dataset::init(rs, Default::default())).unwrap();
    let photos = util::photos();
    let inputs: Vec<InputImage> = (0..48)
        .map(|i| InputImage {
            image_id: format!("web/{i:03}.jpg"),
            data: InputData::Bytes(photos[i % photos.len()].1.clone().into()),
        })
        .collect();
    let mut opts = IngestOptions::new("web");
    opts.workers = 2;
    opts.skip_existing = true;
    opts.shard.shard_rows = 4;
    std::thread::scope(|s| {
        for k in 0..3 {
            let (inputs, opts, rt) = (&inputs, &opts, &rt);
            s.spawn(move || {
                let ds = rt.block_on(Dataset::open(rs)).unwrap();
                // Each run in its own order, so that shards overlap.
                let mut mine = inputs.clone();
                mine.rotate_left(k * 16);
                ingest(rt.handle(), &ds, mine, opts, None).unwrap();
            });
        }
    });
    let ds = rt.block_on(Dataset::open(rs)).unwrap();
    let mut ids = vec![];
    for s in ds.snapshot().images.keys() {
        ids.extend(rt.block_on(ds.read_image_ids(*s)).unwrap());
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((n, ids.len()), (48, 48), "every image once");
}
