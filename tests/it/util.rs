//! Shared helpers: real photos, datasets in temp folders, the binary, Python.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use must_ds::ingest::{ingest, IngestOptions, InputData, InputImage};
use must_ds::{Dataset, DatasetOptions};

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The bundled public-domain photos.
pub fn photos() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/photos");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `n` inputs cycling over the real photos, with ids `img-00000`…
pub fn inputs(n: usize) -> Vec<InputImage> {
    let p = photos();
    (0..n)
        .map(|i| InputImage {
            image_id: format!("img-{i:05}"),
            data: InputData::Bytes(p[i % p.len()].1.clone().into()),
        })
        .collect()
}

/// A fresh dataset in `dir` with `n` images in shards of `shard_rows` and row groups of `rg_rows`.
pub fn dataset_with_images(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    n: usize,
    shard_rows: usize,
    rg_rows: usize,
) -> Dataset {
    let url = dir.to_str().unwrap();
    let ds = rt.block_on(Dataset::init(url, Default::default())).unwrap();
    let mut opts = IngestOptions::new("test");
    opts.workers = 1;
    opts.shard.shard_rows = shard_rows;
    opts.shard.row_group_rows = rg_rows;
    ingest(rt.handle(), &ds, inputs(n), &opts, None).unwrap();
    rt.block_on(Dataset::open_with(url, None, DatasetOptions::default()))
        .unwrap()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_must-ds")
}

pub fn must(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn python() -> String {
    std::env::var("MUST_PYTHON").unwrap_or_else(|_| "python3".into())
}

pub fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools")
}

/// Runs a Python tool; panics with its output when it fails.
pub fn run_python(args: &[&str]) -> String {
    let out = Command::new(python())
        .args(args)
        .output()
        .expect("python3 must be installed (see tools/requirements.txt)");
    assert!(
        out.status.success(),
        "python {:?} failed:\n{}\n{}",
        args,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Every file under `dir` (relative paths) with its bytes, to prove nothing
/// changed. Symbolic links are listed with their target, not followed; a
/// folder that cannot be read fails the test (so that a wrong path cannot
/// pass for an unchanged one).
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    assert!(dir.is_dir(), "{} is not a folder", dir.display());
    let mut out: Vec<_> = walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = match std::fs::read_link(&p) {
                Ok(target) => format!("-> {}", target.display()).into_bytes(),
                Err(_) => std::fs::read(&p).unwrap(),
            };
            (
                p.strip_prefix(dir).unwrap().to_string_lossy().to_string(),
                bytes,
            )
        })
        .collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let rd = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in rd {
        let e = e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let p = e.path();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Writes example labels of `task` (JSON text or file) for an image shard
/// with the Python reference writer.
pub fn python_example_labels(shard_file: &Path, task: &str, out: &Path) -> String {
    run_python(&[
        tools().join("label_writer.py").to_str().unwrap(),
        "example",
        "--shard-file",
        shard_file.to_str().unwrap(),
        "--task",
        task,
        "--out",
        out.to_str().unwrap(),
    ])
}

/// Adds the four demo tasks (all optional) to a loader.
pub fn with_demo_tasks(mut b: must_ds::loader::LoaderBuilder) -> must_ds::loader::LoaderBuilder {
    for t in must_ds::demo::demo_tasks() {
        b = b.task(&t.name, false);
    }
    b
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    for (rel, bytes) in tree(from) {
        let p = to.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

/// Ids of the real (not padding) samples of `batches`, in order.
pub fn real_ids(batches: &[must_ds::loader::Batch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            b.image_ids
                .iter()
                .zip(&b.padding)
                .filter(|(_, p)| !**p)
                .map(|(i, _)| i.clone())
        })
        .collect()
}
