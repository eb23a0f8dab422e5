//! The command line end to end: init, task define, ingest, add-labels,
//! inspect (dataset and lone file), log, demo.

use std::path::Path;

use serde_json::Value;

use crate::util;

#[test]
fn main_commands_work_together() {
    if util::python_with(&["pyarrow"]).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let mut list = String::new();
    for (name, bytes) in util::photos() {
        std::fs::write(photos.join(format!("{name}.jpg")), bytes).unwrap();
        list.push_str(&format!("photos/{name}.jpg\n"));
    }
    let list_file = dir.path().join("list.txt");
    std::fs::write(&list_file, format!("# my list\n{list}")).unwrap();
    let root = dir.path().join("corpus");
    let root = root.to_str().unwrap();
    let ok = |args: &[&str]| {
        let o = util::must(args);
        assert!(o.status.success(), "{args:?}: {}", util::stderr(&o));
        util::stdout(&o)
    };
    ok(&["init", root, "--name", "corpus"]);
    ok(&[
        "task",
        "define",
        root,
        "--name",
        "det",
        "--kind",
        "detection",
        "--class-names",
        "cat,dog",
        "--min-score",
        "0.3",
        "--teacher",
        "owl",
        "--checkpoint",
        "sha256:ab",
    ]);
    let task_json = dir.path().join("cls.json");
    std::fs::write(&task_json, r#"{"name":"cls","kind":"classification","num_classes":10,"encoding":"topk","teacher":"ground-truth"}"#).unwrap();
    ok(&["task", "define", root, task_json.to_str().unwrap()]);
    assert!(ok(&["task", "define", root, task_json.to_str().unwrap()]).contains("already defined"));
    let out = ok(&[
        "ingest",
        root,
        "--from",
        photos.to_str().unwrap(),
        "--source",
        "web",
        "--workers",
        "2",
        "--shard-rows",
        "4",
    ]);
    assert!(out.contains("ingested 7 images"), "{out}");
    let out = ok(&[
        "ingest",
        root,
        "--from",
        list_file.to_str().unwrap(),
        "--source",
        "listed",
        "--shard-rows",
        "100",
        "--workers",
        "1",
    ]);
    assert!(
        out.contains("ingested 7 images") && out.contains("into 1 shard(s)"),
        "{out}"
    );

    let summary: Value = serde_json::from_str(&ok(&["inspect", root, "--json"])).unwrap();
    assert_eq!(summary["rows"], 14);
    // Each of the 2 workers fills its own shards of 4 rows: 2 or 3 shards
    // for the folder, whatever the split, and 1 for the list.
    let shards = summary["image_shards"].as_u64().unwrap();
    assert!((3..=4).contains(&shards), "{shards}");
    assert_eq!(summary["sources"]["web"], 7);
    assert_eq!(summary["sources"]["listed"], 7);
    assert_eq!(
        summary["tasks"]["det"]["definition"]["class_names"][1],
        "dog"
    );
    assert_eq!(
        summary["tasks"]["det"]["definition"]["teacher"]["checkpoint"],
        "sha256:ab"
    );
    assert_eq!(summary["tasks"]["cls"]["shards_labeled"], 0);

    // Label the listed shard with the Python reference writer and add it.
    let ds = util::rt().block_on(must_ds::Dataset::open(root)).unwrap();
    let (shard, images) = ds
        .snapshot()
        .images
        .iter()
        .find(|(_, a)| a.sources.contains_key("listed"))
        .unwrap();
    let shard_file = Path::new(root).join(&images.path);
    let labels = dir.path().join("cls-labels.parquet");
    util::python_example_labels(&shard_file, task_json.to_str().unwrap(), &labels);
    let out = ok(&[
        "add-labels",
        root,
        "--task",
        "cls",
        "--shard",
        &shard.to_string(),
        labels.to_str().unwrap(),
    ]);
    assert!(out.contains("6 of 7 rows labeled"), "{out}");
    let summary: Value = serde_json::from_str(&ok(&["inspect", root, "--json"])).unwrap();
    assert_eq!(summary["tasks"]["cls"]["shards_labeled"], 1);
    assert_eq!(summary["tasks"]["cls"]["rows_labeled"], 6);
    let text = ok(&["inspect", root]);
    assert!(
        text.contains(&format!("coverage: 1/{shards} shards, 6/14 rows labeled")),
        "{text}"
    );
    assert!(text.contains("teacher: owl @ sha256:ab"), "{text}");

    // A lone file, from its key-value metadata.
    let lone: Value =
        serde_json::from_str(&ok(&["inspect", labels.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(lone["table"], "labels");
    assert_eq!(lone["task"]["name"], "cls");
    assert_eq!(lone["labeled"], 6);
    assert_eq!(lone["columns"]["probs"], "List<Float32>");
    let lone: Value =
        serde_json::from_str(&ok(&["inspect", shard_file.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(lone["table"], "images");
    assert_eq!(lone["sources"]["listed"], 7);

    let log = ok(&["log", root]);
    assert!(
        log.contains("version 0") && log.contains("init") && log.contains("add_labels \"cls\""),
        "{log}"
    );
    let lines = ok(&["log", root, "--json"]);
    let versions: Vec<u64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["version"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(versions, (0..versions.len() as u64).collect::<Vec<_>>());
    assert!(ok(&["--help"]).contains("demo"));
    assert!(ok(&["ingest", "--help"]).contains("Example: must-ds ingest"));
}

#[test]
fn demo_builds_four_fully_labeled_tasks() {
    if util::python_with(&["pyarrow", "duckdb"]).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    let out = util::must(&["demo", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", util::stderr(&out));
    let text = util::stdout(&out);
    assert!(
        text.contains("DEMONSTRATION teachers") && text.contains("not models"),
        "{text}"
    );
    let o = util::must(&["inspect", root.to_str().unwrap(), "--json"]);
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = s["rows"].as_u64().unwrap();
    assert!(rows >= 300, "a few hundred images: {rows}");
    let tasks = s["tasks"].as_object().unwrap();
    let kinds: std::collections::BTreeSet<&str> = tasks
        .values()
        .map(|t| t["definition"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    for (name, t) in tasks {
        assert_eq!(t["shards_labeled"], t["shards_total"], "{name}");
        assert_eq!(t["rows_labeled"].as_u64(), Some(rows), "{name}");
    }
    // Running it again replaces the previous demo.
    assert!(util::must(&["demo", root.to_str().unwrap()])
        .status
        .success());
    let out = util::run_python(&[
        util::fixture_tools()
            .join("check_interop.py")
            .to_str()
            .unwrap(),
        root.to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rows"].as_u64(), Some(rows));
}
