//! Hostile input, planted the way a user meets it: secrets in dataset URLs,
//! logs and label files written by tools that check nothing, counts near
//! 2^64, terminal escapes in names, and saved loader states edited by hand.
//! Each must end in a clear error or a report: never a panic, an unbounded
//! allocation, a leaked secret or a raw escape on the terminal.

use std::path::Path;
use std::process::Output;

use must_ds::audit::{render_sample, RenderOptions};
use must_ds::codec::{labels_to_batch, ClassLabel, DepthMap, Label, SegMap};
use must_ds::format::{checksum_of, label_schema, Action, AddImages, AddLabels, TaskDef};
use must_ds::loader::{LoaderBuilder, LoaderState, Segment};
use must_ds::write::LabelWriter;
use must_ds::{Dataset, Transaction};
use serde_json::{json, Value};

use crate::util;

const SECRETS: [&str; 3] = ["topsecret", "sig=abc", "X-Amz-Signature"];

/// Checks that a run of the binary did not panic and printed no secret.
fn clean(o: &Output, what: &str) {
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
fn fails(args: &[&str]) -> String {
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
fn succeeds(args: &[&str]) -> String {
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
const CLS: &str = r#"{"name":"cls","kind":"classification","num_classes":4,"encoding":"topk","teacher":"ground-truth"}"#;

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

/// Commits a copy of shard 0's file as a new image shard whose log entry
/// claims `row_groups` (a tool that checks nothing); returns its path.
fn commit_forged_shard(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    name: &str,
    row_groups: Vec<u64>,
) -> String {
    let mut ds = rt.block_on(Dataset::open(root.to_str().unwrap())).unwrap();
    let src = ds.snapshot().images[&0].path.clone();
    let bytes = std::fs::read(root.join(&src)).unwrap();
    let path = format!("images/part-{name}.parquet");
    std::fs::write(root.join(&path), &bytes).unwrap();
    let rows = row_groups
        .iter()
        .fold(0u64, |a, &n| a.checked_add(n).unwrap());
    let add = AddImages {
        shard: ds.snapshot().images.keys().max().unwrap() + 1,
        path: path.clone(),
        rows,
        bytes: bytes.len() as u64,
        checksum: checksum_of(&bytes),
        row_groups,
        sources: [("test".to_string(), rows)].into(),
    };
    rt.block_on(ds.commit(Transaction::new("ingest").with(Action::AddImages(add))))
        .unwrap();
    path
}

/// `inspect --stats --sample` draws rows from the log's counts: a row group
/// holding fewer rows than the log says is reported with its file, not
/// indexed past its end.
#[test]
fn stats_on_a_row_group_shorter_than_the_log_says_is_an_error() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let mut ds = util::dataset_with_images(&rt, &root, 8, 8, 3);
    rt.block_on(ds.define_task(TaskDef::from_json(CLS).unwrap()))
        .unwrap();
    // The file's row groups hold 3, 3 and 2 rows; the log says 5, 3, 2.
    let forged = commit_forged_shard(&rt, &root, "forged", vec![5, 3, 2]);
    let r = root.to_str().unwrap();
    for extra in [&["--sample", "9"][..], &[], &["--sample", "9", "--json"]] {
        let mut args = vec!["inspect", r, "--stats", "--shards", "1"];
        args.extend_from_slice(extra);
        let err = fails(&args);
        assert!(
            err.contains(&forged) && err.contains("row group 0") && err.contains("log says 5"),
            "{args:?}: {err}"
        );
    }
    // The honest shard alone is fine.
    let text = succeeds(&["inspect", r, "--stats", "--shards", "0", "--sample", "5"]);
    assert!(text.contains("5 of 8 rows"), "{text}");
}

/// A saved loader state is data: a world size of 0 or 2^64 - 1, batches
/// past the end, thousands of segments or a rank outside the world are
/// refused with an error naming the field, before anything is allocated
/// for them.
#[test]
fn loader_states_with_hostile_values_are_refused() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let mut ds = util::dataset_with_images(&rt, &root, 8, 8, 3);
    rt.block_on(ds.define_task(TaskDef::from_json(CLS).unwrap()))
        .unwrap();
    let b = |epoch: u64| {
        LoaderBuilder::open(root.to_str().unwrap(), None)
            .task("cls", false)
            .batch_size(2)
            .output_size(32, 32)
            .workers(1)
            .epoch(epoch)
    };
    let mut l = b(0).build().unwrap();
    l.next().unwrap().unwrap();
    let state = l.state();
    drop(l);
    assert_eq!(
        state.segments,
        [Segment {
            world_size: 1,
            batches: 1
        }]
    );
    let with = |segments: Vec<Segment>| LoaderState {
        segments,
        ..state.clone()
    };
    let seg = |world_size, batches| Segment {
        world_size,
        batches,
    };
    let cases: Vec<(LoaderState, &str)> = vec![
        (
            with(vec![seg(0, 0), seg(1, 1)]),
            "segments[0].world_size is 0",
        ),
        (with(vec![seg(0, 0)]), "segments[0].world_size is 0"),
        (
            with(vec![seg(usize::MAX, 0)]),
            "segments[0].world_size is 18446744073709551615",
        ),
        (
            with(vec![seg(2, 0), seg(usize::MAX, 3), seg(1, 0)]),
            "segments[1].world_size",
        ),
        (
            with(vec![seg(1, u64::MAX)]),
            "segments[0].batches is 18446744073709551615",
        ),
        (
            with(vec![seg(3, u64::MAX), seg(1, 0)]),
            "segments[0].batches",
        ),
        (with(vec![seg(2, 1); 5000]), "5000 segments"),
        (
            LoaderState {
                epoch: u64::MAX,
                ..state.clone()
            },
            "epoch 18446744073709551615",
        ),
    ];
    for (bad, needle) in cases {
        let segments = bad.segments.len();
        let e = match b(0).resume(bad).build() {
            Ok(_) => panic!("a state with {segments} segments ({needle}) was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(needle), "{needle:?} not in {e:?}");
    }
    // The same through JSON, as a state is saved: negative or fractional
    // world sizes do not parse.
    let mut v: Value = serde_json::to_value(&state).unwrap();
    for bad in [json!(-1), json!(1.5), json!("2"), json!(1e30)] {
        v["segments"][0]["world_size"] = bad.clone();
        assert!(
            serde_json::from_value::<LoaderState>(v.clone()).is_err(),
            "{bad}"
        );
    }
    // The builder's own rank and world size.
    for (rank, world, needle) in [
        (3, 2, "rank 3 is not in a world of 2"),
        (0, 0, "rank 0 is not in a world of 0"),
        (0, usize::MAX, "world size 18446744073709551615"),
    ] {
        let e = match b(0).rank(rank, world).build() {
            Ok(_) => panic!("rank {rank} of {world} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(needle), "{needle:?} not in {e:?}");
    }
    // The largest epoch is just a number: planned and resumed like any.
    let mut l = b(u64::MAX).build().unwrap();
    l.next().unwrap().unwrap();
    let s = l.state();
    drop(l);
    let l = b(u64::MAX).resume(s).build().unwrap();
    assert_eq!(l.remaining(), l.batches_per_epoch() - 1);
}

/// `num_classes` sizes dense probability rows and class tables: a task
/// with more than 2^24 classes (or more than its mask dtype holds) is
/// refused, from the command line and from a log written by another tool.
#[test]
fn unbounded_num_classes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let r = root.to_str().unwrap();
    succeeds(&["init", r]);
    for (i, def) in [
        r#"{"name":"c","kind":"classification","num_classes":4294967295,"encoding":"dense"}"#,
        r#"{"name":"c","kind":"classification","num_classes":16777217}"#,
        r#"{"name":"d","kind":"detection","num_classes":4294967295}"#,
        r#"{"name":"s","kind":"segmentation","num_classes":4294967295,"dtype":"u16"}"#,
        r#"{"name":"s","kind":"segmentation","num_classes":70000,"dtype":"u16","ignore_index":65535}"#,
    ]
    .iter()
    .enumerate()
    {
        let f = dir.path().join(format!("task-{i}.json"));
        std::fs::write(&f, def).unwrap();
        let err = fails(&["task", "define", r, f.to_str().unwrap()]);
        assert!(err.contains("classes"), "{def}: {err}");
    }
    let ok = dir.path().join("ok.json");
    std::fs::write(
        &ok,
        r#"{"name":"c","kind":"classification","num_classes":16777216}"#,
    )
    .unwrap();
    succeeds(&["task", "define", r, ok.to_str().unwrap()]);
    // A commit written by a tool that checks nothing: the log is corrupt.
    let commit = json!({
        "version": 2,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "operation": "define-task",
        "writer": "other-tool",
        "actions": [{"task": {"name": "huge", "kind": "classification",
                              "num_classes": 4294967295u64, "encoding": "dense"}}]
    });
    let file = "_must/log/00000000000000000002.json";
    std::fs::write(root.join(file), serde_json::to_vec(&commit).unwrap()).unwrap();
    for cmd in [&["inspect", r][..], &["log", r], &["inspect", r, "--stats"]] {
        let err = fails(cmd);
        assert!(
            err.contains("00000000000000000002.json") && err.contains("num_classes"),
            "{cmd:?}: {err}"
        );
    }
}

/// Row counts near 2^64 in the log: totals shown saturate instead of
/// wrapping, and the commands that use them as indices fail with the file.
#[test]
fn row_counts_near_u64_max_saturate_or_fail_naming_the_file() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let mut ds = util::dataset_with_images(&rt, &root, 8, 8, 3);
    rt.block_on(ds.define_task(TaskDef::from_json(CLS).unwrap()))
        .unwrap();
    let half = 1u64 << 63;
    let a = commit_forged_shard(&rt, &root, "huge-a", vec![half]);
    let b = commit_forged_shard(&rt, &root, "huge-b", vec![half - 1, 1]);
    let r = root.to_str().unwrap();
    let v: Value = serde_json::from_str(&succeeds(&["inspect", r, "--json"])).unwrap();
    assert_eq!(v["rows"], u64::MAX, "{v}");
    assert_eq!(v["sources"]["test"], u64::MAX, "sources wrapped: {v}");
    assert_eq!(v["tasks"]["cls"]["rows_total"], u64::MAX, "{v}");
    let text = succeeds(&["inspect", r]);
    assert!(text.contains(&u64::MAX.to_string()), "{text}");
    // Statistics index rows: the sum past 2^64 is an error naming a file.
    for extra in [&[][..], &["--sample", "5"]] {
        let mut args = vec!["inspect", r, "--stats"];
        args.extend_from_slice(extra);
        let err = fails(&args);
        assert!(err.contains(&b) && err.contains("2^64"), "{args:?}: {err}");
    }
    // One huge shard: its rows are summed, but the file has 8.
    let err = fails(&["inspect", r, "--stats", "--shards", "1"]);
    assert!(err.contains(&a) && err.contains("log says"), "{err}");
    // Render picks rows by the log's counts, then finds the file shorter.
    let png = dir.path().join("x.png");
    let png = png.to_str().unwrap();
    let err = fails(&[
        "render",
        r,
        "--index",
        &(half + 3).to_string(),
        "--out",
        png,
    ]);
    assert!(err.contains(&a), "{err}");
    let o = util::must(&["render", r, "--grid", "3", "--out", png]);
    clean(&o, "render --grid");
    let o = util::must(&["log", r]);
    clean(&o, "log");
    assert!(o.status.success());
}

/// A commit file of any size: one over 256 MiB is refused by the size the
/// store reports, before its body is read.
#[test]
fn commit_files_over_256_mib_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let r = root.to_str().unwrap();
    succeeds(&["init", r]);
    let file = "_must/log/00000000000000000001.json";
    // Sparse: takes no disk, but reading it would fill 257 MiB of memory.
    std::fs::File::create(root.join(file))
        .unwrap()
        .set_len(257 << 20)
        .unwrap();
    for cmd in [&["inspect", r][..], &["log", r], &["validate", r]] {
        let err = fails(cmd);
        assert!(
            err.contains("00000000000000000001.json") && err.contains("256 MiB"),
            "{cmd:?}: {err}"
        );
    }
}

/// Strings from the log and from data files (dataset name, description,
/// source, class names, teacher fields, operation, writer) carry terminal
/// escapes and carriage returns: `inspect`, `inspect --stats`, `validate`
/// and the action lines of `log` print them escaped (JSON escapes them by
/// itself).
fn hostile_names(dir: &Path) -> (tokio::runtime::Runtime, String, String) {
    let rt = util::rt();
    let root = dir.join("ds");
    let url = root.to_str().unwrap().to_string();
    let opts = must_ds::DatasetOptions {
        writer: "w\u{1b}[2J\rriter".into(),
        ..Default::default()
    };
    let info = must_ds::format::DatasetInfo {
        name: "evil\u{1b}[2J".into(),
        description: "line\roverwritten\u{9b}31m".into(),
    };
    let mut ds = rt.block_on(Dataset::init_with(&url, info, opts)).unwrap();
    let mut ingest = must_ds::ingest::IngestOptions::new("web\u{1b}]0;title\u{7}");
    ingest.workers = 1;
    must_ds::ingest::ingest(rt.handle(), &ds, util::inputs(4), &ingest, None).unwrap();
    let task = TaskDef::from_json(
        r#"{"name":"cls","kind":"classification","num_classes":2,
            "class_names":["cat\u001b[31m","dog\r\u202eevil"],
            "teacher":{"name":"t\u001b[1A","checkpoint":"c\u009b2J","params":{"k":"\u0085"}}}"#,
    )
    .unwrap();
    rt.block_on(ds.refresh()).unwrap();
    rt.block_on(
        ds.commit(Transaction::new("op\u{1b}[2J\rspoofed").with(Action::Task(task.clone()))),
    )
    .unwrap();
    let mut w = rt.block_on(LabelWriter::for_shard(&ds, "cls", 0)).unwrap();
    for id in rt.block_on(ds.read_image_ids(0)).unwrap() {
        w.set(
            &id,
            Label::Classification(ClassLabel::TopK {
                classes: vec![1, 0],
                probs: vec![0.7, 0.2],
            }),
        )
        .unwrap();
    }
    let added = rt
        .block_on(ds.add_label_file("cls", 0, w.finish().unwrap(), false))
        .unwrap();
    let label_file = root.join(&added.path).to_str().unwrap().to_string();
    (rt, url, label_file)
}

fn no_raw_controls(text: &str, what: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| (c.is_control() && *c != '\n') || ('\u{202a}'..='\u{202e}').contains(c))
        .collect();
    assert!(
        bad.is_empty(),
        "{what} printed raw controls {bad:?}:\n{text}"
    );
}

#[test]
fn control_characters_from_the_log_are_escaped_in_text_output() {
    let dir = tempfile::tempdir().unwrap();
    let (_rt, url, label_file) = hostile_names(dir.path());
    let u = url.as_str();
    let text = succeeds(&["inspect", u]);
    no_raw_controls(&text, "inspect");
    assert!(
        text.contains("evil\\u{1b}[2J") && text.contains("cat\\u{1b}[31m"),
        "{text}"
    );
    no_raw_controls(&succeeds(&["inspect", u, "--stats"]), "inspect --stats");
    no_raw_controls(&succeeds(&["inspect", &label_file]), "inspect FILE");
    no_raw_controls(
        &succeeds(&["inspect", &label_file, "--stats"]),
        "inspect FILE --stats",
    );
    no_raw_controls(&succeeds(&["validate", u]), "validate");
    // `log`: the action lines (task definitions with their class names and
    // teacher, sources, paths).
    let log = succeeds(&["log", u]);
    let actions: String = log
        .lines()
        .filter(|l| l.starts_with("    "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(actions.contains("task \"cls\""), "{log}");
    no_raw_controls(&actions, "log (actions)");
    // JSON output escapes every control character by itself.
    for cmd in [&["inspect", u, "--json"][..], &["log", u, "--json"]] {
        let out = succeeds(cmd);
        assert!(!out.contains('\u{1b}') && !out.contains('\r'), "{cmd:?}");
    }
}

/// `log`'s line per commit quotes its `operation` and `writer`, which any
/// writer of the log chooses.
#[test]
fn log_escapes_the_operation_and_writer_of_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (_rt, url, _) = hostile_names(dir.path());
    let log = succeeds(&["log", &url]);
    no_raw_controls(&log, "log");
    assert!(log.contains("op\\u{1b}[2J\\rspoofed"), "{log}");
    assert!(log.contains("w\\u{1b}[2J\\rriter"), "{log}");
}
