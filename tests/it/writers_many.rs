//! Eight OS processes ingest and label one dataset at once (local folder
//! and S3): every commit is in the log, shard ids are unique, every label
//! file is aligned, and `inspect` agrees with what the writers reported.
//! The S3 test server checks-then-writes, so this proves the protocol on
//! S3; atomicity of racing creators is proven on the local folder.

use std::collections::BTreeSet;
use std::path::Path;

use must_ds::format::{Action, TaskDef};
use must_ds::write::LabelWriter;
use must_ds::Dataset;
use serde_json::Value;

use crate::util;

const PROCS: usize = 8;
const IMAGES: usize = 6;
const SHARD_ROWS: usize = 3;
const TASK: &str = r#"{"name":"cls","kind":"classification","num_classes":5,"encoding":"topk","teacher":"ground-truth"}"#;

fn run(root: &str) {
    let rt = util::rt();
    let work = tempfile::tempdir().unwrap();
    let photos = util::photos();
    let task = TaskDef::from_json(TASK).unwrap();
    let mut ds = rt
        .block_on(Dataset::init(root, Default::default()))
        .unwrap();
    rt.block_on(ds.define_task(task.clone())).unwrap();
    let mut children = vec![];
    for p in 0..PROCS {
        let src = work.path().join(format!("in{p}"));
        std::fs::create_dir_all(&src).unwrap();
        let mut names = vec![];
        for i in 0..IMAGES {
            let name = format!("img{i:02}.jpg");
            std::fs::write(src.join(&name), &photos[(p + i) % photos.len()].1).unwrap();
            names.push(format!("p{p}/{name}"));
        }
        // The label files, made ahead from the ids each shard will hold
        // (one worker: files in name order, SHARD_ROWS per shard).
        for (k, ids) in names.chunks(SHARD_ROWS).enumerate() {
            let mut w =
                LabelWriter::new(task.clone(), 0, ids.to_vec(), vec![ids.len() as u64]).unwrap();
            for (i, id) in ids.iter().enumerate() {
                w.set(
                    id,
                    must_ds::codec::Label::Classification(must_ds::codec::ClassLabel::TopK {
                        classes: vec![(i % 5) as u32],
                        probs: vec![0.9],
                    }),
                )
                .unwrap();
            }
            std::fs::write(
                work.path().join(format!("p{p}-{k}.parquet")),
                &w.finish().unwrap().bytes,
            )
            .unwrap();
        }
        let script = format!(
            r#"set -e
out=$("{bin}" ingest "{root}" --from "{src}" --source p{p} --workers 1 --shard-rows {SHARD_ROWS})
echo "$out"
k=0
for s in $(echo "$out" | sed -n 's/^  shard \([0-9]*\):.*/\1/p'); do
  "{bin}" add-labels "{root}" --task cls --shard $s "{work}/p{p}-$k.parquet"
  k=$((k+1))
done"#,
            bin = util::bin(),
            src = src.display(),
            work = work.path().display()
        );
        children.push(
            std::process::Command::new("bash")
                .args(["-c", &script])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    let mut reported = BTreeSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in text.lines().filter(|l| l.starts_with("  shard ")) {
            reported.insert(
                line.split(':')
                    .next()
                    .unwrap()
                    .trim_start_matches("  shard ")
                    .parse::<u64>()
                    .unwrap(),
            );
        }
        assert_eq!(
            text.matches("committed labels").count(),
            IMAGES / SHARD_ROWS,
            "{text}"
        );
    }
    let shards = (PROCS * IMAGES / SHARD_ROWS) as u64;
    assert_eq!(reported, (0..shards).collect(), "what the writers reported");
    let ds = rt.block_on(Dataset::open(root)).unwrap();
    let history = rt.block_on(ds.history()).unwrap();
    assert_eq!(
        history.len() as u64,
        2 + 2 * shards,
        "every commit is in the log"
    );
    let added: Vec<u64> = history
        .iter()
        .flat_map(|c| c.actions.iter())
        .filter_map(|a| {
            if let Action::AddImages(a) = a {
                Some(a.shard)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        added.iter().copied().collect::<BTreeSet<_>>().len(),
        added.len(),
        "unique shard ids"
    );
    let inspect: Value =
        serde_json::from_slice(&util::must(&["inspect", root, "--json"]).stdout).unwrap();
    assert_eq!(inspect["image_shards"], shards);
    assert_eq!(inspect["rows"], (PROCS * IMAGES) as u64);
    assert_eq!(inspect["tasks"]["cls"]["shards_labeled"], shards);
    assert_eq!(
        inspect["tasks"]["cls"]["rows_labeled"],
        (PROCS * IMAGES) as u64
    );
    // Every label file aligned, every file intact.
    let v = util::must(&["validate", root]);
    assert!(v.status.success(), "{}", util::stdout(&v));
    let _ = Path::new(root);
}

#[test]
fn eight_processes_on_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path().join("ds").to_str().unwrap());
}

#[test]
fn eight_processes_on_s3() {
    if util::python_with(crate::s3::MOTO).is_none() {
        return;
    }
    let bucket = crate::s3::bucket("many-writers");
    run(&format!("{bucket}/corpus"));
}
