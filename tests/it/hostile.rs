//! Hostile input, planted the way a user meets it: secrets in dataset URLs
//! (also on S3), and label files written by tools that check nothing, which
//! `render` draws. Forged counts, states and names: hostile_log.rs.
//! Each must end in a clear error or a report: never a panic, an unbounded
//! allocation, a leaked secret or a raw escape on the terminal.

use std::path::Path;
use std::process::Output;

use must_ds::audit::{render_sample, RenderOptions};
use must_ds::codec::{labels_to_batch, DepthMap, Label, SegMap};
use must_ds::format::{checksum_of, label_schema, Action, AddLabels, TaskDef};
use must_ds::{Dataset, Transaction};

use crate::util;

const SECRETS: [&str; 3] = ["topsecret", "sig=abc", "X-Amz-Signature"];

/// Checks that a run of the binary did not panic and printed no secret.
pub(crate) fn clean(o: &Output, what: &str) {
    let (out, err) = (util::stdout(o), util::stderr(o));
    assert_ne!(o.status.code(), Some(101), "{what} panicked: {err}");
    assert!(!err.contains("panicked"), "{what} panicked: {err}");
    for s in SECRETS {
        assert!(
            !out.contains(s) && !err.contains(s),
            "{what} printed the secret {s:?}:\n{out}\n{err}"
        );
    }
}

/// Runs the binary, checks it is clean and failed with exit code 1, and
/// returns its stderr.
pub(crate) fn fails(args: &[&str]) -> String {
    let o = util::must(args);
    clean(&o, &format!("{args:?}"));
    assert_eq!(
        o.status.code(),
        Some(1),
        "{args:?} must fail with an error: {} {}",
        util::stdout(&o),
        util::stderr(&o)
    );
    util::stderr(&o)
}

/// Runs the binary, checks it succeeded, and returns its stdout.
pub(crate) fn succeeds(args: &[&str]) -> String {
    let o = util::must(args);
    clean(&o, &format!("{args:?}"));
    assert!(o.status.success(), "{args:?} failed: {}", util::stderr(&o));
    util::stdout(&o)
}

fn chain_text(e: &dyn std::error::Error) -> String {
    let mut text = format!("{e}");
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(&format!("\n{s}"));
        next = s.source();
    }
    text
}

// ------------------------------------------------------------ A. secrets

#[test]
fn secrets_in_dataset_urls_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("nothing-here");
    let urls = [
        "https://user:topsecret@host.invalid/x?sig=abc".to_string(),
        "http://user:topsecret@127.0.0.1:9/x?sig=abc".to_string(),
        "file://user:topsecret@host.invalid/x?sig=abc".to_string(),
        format!("file://user:topsecret@localhost{}?sig=abc", local.display()),
        "memory://user:topsecret@bucket/x?sig=abc".to_string(),
    ];
    for url in &urls {
        for cmd in [
            &["inspect", url][..],
            &["inspect", url, "--json"],
            &["inspect", url, "--stats"],
            &["validate", url],
            &["log", url],
            &[
                "task",
                "define",
                url,
                "--name",
                "c",
                "--kind",
                "detection",
                "--num-classes",
                "3",
            ],
        ] {
            let err = fails(cmd);
            assert!(err.contains("***"), "{cmd:?}: {err}");
        }
    }
    // The library's errors, their sources and the URL a dataset shows.
    let rt = util::rt();
    for url in &urls[..4] {
        let e = rt.block_on(Dataset::open(url)).unwrap_err();
        let text = format!("{}\n{e:?}", chain_text(&e));
        assert!(SECRETS.iter().all(|s| !text.contains(s)), "{url}: {text}");
    }
    let ds = rt
        .block_on(Dataset::init(
            "memory://user:topsecret@hostile/x?sig=abc",
            Default::default(),
        ))
        .unwrap();
    assert_eq!(ds.url(), "memory://***@hostile/x?***");
    let ds = rt
        .block_on(Dataset::open("memory://user:topsecret@hostile/x?sig=abc"))
        .unwrap();
    assert!(!ds.url().contains("topsecret"), "{}", ds.url());
}

/// Object store errors quote the URLs of requests (with their queries) and
/// the messages of the HTTP client: on S3 (moto on loopback), nothing of
/// the dataset URL's userinfo or query comes out, whether the commands work
/// or fail.
#[test]
fn secrets_in_s3_urls_are_never_printed() {
    if util::python_with(crate::s3::MOTO).is_none() {
        return;
    }
    crate::s3::bucket("hostile-secrets");
    let url = "s3://user:topsecret@hostile-secrets/ds?X-Amz-Signature=abc&sig=abc";
    succeeds(&["init", url, "--name", "s3ds"]);
    let text = succeeds(&["inspect", url]);
    assert!(text.contains("s3://hostile-secrets/ds"), "{text}");
    succeeds(&["inspect", url, "--json"]);
    succeeds(&["validate", url]);
    succeeds(&["log", url]);
    // A bucket that does not exist: the error quotes the list request.
    let err = fails(&[
        "inspect",
        "s3://user:topsecret@no-such-bucket-hostile/ds?sig=abc",
    ]);
    assert!(err.contains("no-such-bucket-hostile"), "{err}");
    // An endpoint with credentials in it (from the environment): object
    // store errors quote it in every request URL.
    let endpoint = format!("http://user:topsecret@127.0.0.1:{}", crate::s3::moto().port);
    for args in [
        &["inspect", "s3://no-such-bucket-hostile/ds"][..],
        &["validate", "s3://no-such-bucket-hostile/ds"],
    ] {
        let o = std::process::Command::new(util::bin())
            .args(args)
            .env("AWS_ENDPOINT", &endpoint)
            .output()
            .unwrap();
        clean(&o, &format!("{args:?} with AWS_ENDPOINT {endpoint}"));
        assert_eq!(o.status.code(), Some(1), "{}", util::stderr(&o));
        assert!(
            util::stderr(&o).contains("http://***@127.0.0.1"),
            "{}",
            util::stderr(&o)
        );
    }
}

// ------------------------------------------------------------ B. data

const SEG: &str =
    r#"{"name":"seg","kind":"segmentation","num_classes":3,"dtype":"u8","teacher":"ground-truth"}"#;
const DEPTH: &str =
    r#"{"name":"depth","kind":"depth","representation":"relative","teacher":"ground-truth"}"#;

/// Writes `labels` of `task` for shard 0 (row groups of 3, 3, 2) and
/// commits the file as a tool that checks no value would.
fn commit_unchecked(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    task: &TaskDef,
    ids: &[String],
    labels: &[Option<Label>],
) -> String {
    let mut w = parquet::arrow::ArrowWriter::try_new(
        Vec::new(),
        std::sync::Arc::new(label_schema(task, false)),
        None,
    )
    .unwrap();
    for (s, n) in [(0, 3), (3, 3), (6, 2)] {
        w.write(&labels_to_batch(task, &ids[s..s + n], &labels[s..s + n], false).unwrap())
            .unwrap();
        w.flush().unwrap();
    }
    let bytes = w.into_inner().unwrap();
    let path = format!("labels/{}/part-unchecked-0.parquet", task.name);
    std::fs::create_dir_all(root.join("labels").join(&task.name)).unwrap();
    std::fs::write(root.join(&path), &bytes).unwrap();
    let mut ds = rt.block_on(Dataset::open(root.to_str().unwrap())).unwrap();
    let add = AddLabels {
        task: task.name.clone(),
        shard: 0,
        path: path.clone(),
        rows: ids.len() as u64,
        bytes: bytes.len() as u64,
        checksum: checksum_of(&bytes),
        labeled: labels.iter().filter(|l| l.is_some()).count() as u64,
        replace: false,
    };
    rt.block_on(ds.commit(Transaction::new("add-labels").with(Action::AddLabels(add))))
        .unwrap();
    path
}

/// `render` on a mask shorter than its height × width and on maps with a
/// height or width of 0: the picture is drawn, the bad labels are named
/// (file, row, image id, why) instead of indexing past their ends.
#[test]
fn render_reports_maps_whose_sizes_lie() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let mut ds = util::dataset_with_images(&rt, &root, 8, 8, 3);
    let (seg, depth) = (
        TaskDef::from_json(SEG).unwrap(),
        TaskDef::from_json(DEPTH).unwrap(),
    );
    rt.block_on(ds.define_task(seg.clone())).unwrap();
    rt.block_on(ds.define_task(depth.clone())).unwrap();
    let ids = rt.block_on(ds.read_image_ids(0)).unwrap();
    let mut segs: Vec<Option<Label>> = (0..8)
        .map(|_| {
            Some(Label::Segmentation(SegMap::from_u8(
                2,
                2,
                vec![0, 1, 2, 255],
            )))
        })
        .collect();
    segs[1] = Some(Label::Segmentation(SegMap::from_u8(4, 4, vec![1; 3]))); // short
    segs[4] = Some(Label::Segmentation(SegMap::from_u8(0, 5, vec![]))); // height 0
    segs[5] = Some(Label::Segmentation(SegMap::from_u8(7, 0, vec![1; 7]))); // width 0
    let mut depths: Vec<Option<Label>> = (0..8)
        .map(|_| Some(Label::Depth(DepthMap::from_f32(1, 2, &[1.0, 2.0]))))
        .collect();
    depths[2] = Some(Label::Depth(DepthMap {
        height: 3,
        width: 0,
        depth: vec![],
    }));
    depths[4] = Some(Label::Depth(DepthMap::from_f32(9, 9, &[1.0])));
    let seg_file = commit_unchecked(&rt, &root, &seg, &ids, &segs);
    let depth_file = commit_unchecked(&rt, &root, &depth, &ids, &depths);
    let r = root.to_str().unwrap();
    for index in ["1", "2", "4", "5"] {
        let png = dir.path().join(format!("row-{index}.png"));
        succeeds(&[
            "render",
            r,
            "--index",
            index,
            "--out",
            png.to_str().unwrap(),
        ]);
        image::open(&png).unwrap();
    }
    let sheet = dir.path().join("sheet.png");
    succeeds(&["render", r, "--grid", "8", "--out", sheet.to_str().unwrap()]);
    image::open(&sheet).unwrap();
    // The library says which labels it could not draw, and why.
    let ds = rt.block_on(Dataset::open(r)).unwrap();
    let one = rt
        .block_on(render_sample(&ds, None, Some(1), &RenderOptions::default()))
        .unwrap();
    assert_eq!(one.problems.len(), 1, "{:?}", one.problems);
    let p = &one.problems[0];
    assert!(
        p.contains(&format!("{seg_file}, row 1")) && p.contains(&ids[1]) && p.contains("mask"),
        "{p}"
    );
    assert!(one.panels.iter().any(|x| x.task == "depth"));
    assert!(!one.panels.iter().any(|x| x.task == "seg"));
    let four = rt
        .block_on(render_sample(&ds, None, Some(4), &RenderOptions::default()))
        .unwrap();
    assert_eq!(four.problems.len(), 2, "{:?}", four.problems);
    assert!(four.problems.iter().any(|p| p.contains(&depth_file)));
    assert!(
        four.problems.iter().any(|p| p.contains("0x5")),
        "{:?}",
        four.problems
    );
}

/// A very wide image (a valid 20000 × 1 PNG is a few hundred bytes) is
/// scaled to a bounded panel, not up to millions of pixels wide.
#[test]
fn render_bounds_the_picture_of_a_very_wide_image() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let ds = rt.block_on(Dataset::init(url, Default::default())).unwrap();
    let mut png = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(20000, 1, image::Rgb([200, 10, 10]))
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    let inputs = vec![must_ds::ingest::InputImage {
        image_id: "wide".into(),
        data: must_ds::ingest::InputData::Bytes(png.into_inner().into()),
    }];
    let mut opts = must_ds::ingest::IngestOptions::new("test");
    opts.workers = 1;
    must_ds::ingest::ingest(rt.handle(), &ds, inputs, &opts, None).unwrap();
    let ds = rt.block_on(Dataset::open(url)).unwrap();
    let r = rt
        .block_on(render_sample(
            &ds,
            Some("wide"),
            None,
            &RenderOptions::default(),
        ))
        .unwrap();
    assert!(
        r.image.width() <= 8192 && r.image.height() <= 1024,
        "{}x{}",
        r.image.width(),
        r.image.height()
    );
}

/// `render --grid` on a dataset without images: an error, not a panic.
#[test]
fn render_grid_on_an_empty_dataset_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("empty");
    let r = root.to_str().unwrap();
    succeeds(&["init", r]);
    let png = dir.path().join("x.png");
    let err = fails(&["render", r, "--grid", "4", "--out", png.to_str().unwrap()]);
    assert!(err.contains("no image rows"), "{err}");
    let err = fails(&["render", r, "--out", png.to_str().unwrap()]);
    assert!(err.contains("past the last row"), "{err}");
    assert!(!png.exists());
}
