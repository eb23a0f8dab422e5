//! Hostile logs and states, planted the way a user meets them: row counts
//! that lie or come near 2^64, unbounded class counts, commit files over
//! 256 MiB, saved loader states edited by hand, and terminal escapes in the
//! names the log carries. Each must end in a clear error or a report: never
//! a panic, an unbounded allocation or a raw escape on the terminal.

use std::path::Path;

use must_ds::codec::{ClassLabel, Label};
use must_ds::format::{checksum_of, Action, AddImages, TaskDef};
use must_ds::loader::{LoaderBuilder, LoaderState, Segment};
use must_ds::write::LabelWriter;
use must_ds::{Dataset, Transaction};
use serde_json::{json, Value};

use crate::hostile::{clean, fails, succeeds};
use crate::util;

const CLS: &str = r#"{"name":"cls","kind":"classification","num_classes":4,"encoding":"topk","teacher":"ground-truth"}"#;

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
