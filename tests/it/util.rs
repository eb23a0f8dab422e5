//! Shared helpers: real photos, datasets in temp folders, the binary, Python.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

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
    let mut out: Vec<_> = list_dir(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().to_string(),
                read(&p),
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

/// The Python interpreter (`MUST_PYTHON`, else `python3`) when it imports
/// every one of `modules` (`python3 -c "import a, b"`, run once per module
/// set). Otherwise None, after printing `skipped: <test> needs python3 with
/// a, b: <reason>` to stderr: a test that runs Python calls this first and
/// returns on None. With `MUST_DS_REQUIRE_PYTHON=1` (tools/test.sh, so CI)
/// it panics with that reason instead, so that no test is skipped silently.
pub fn python_with(modules: &[&str]) -> Option<String> {
    type Checked = Mutex<HashMap<Vec<String>, Result<(), String>>>;
    static CHECKED: OnceLock<Checked> = OnceLock::new();
    let python = python();
    let key: Vec<String> = modules.iter().map(|m| m.to_string()).collect();
    let checked = CHECKED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_insert_with(|| imports(&python, modules))
        .clone();
    let reason = match checked {
        Ok(()) => return Some(python),
        Err(reason) => reason,
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    let why = format!(
        "{test} needs {python} with {}: {reason}",
        modules.join(", ")
    );
    if std::env::var("MUST_DS_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
        panic!("{why} (MUST_DS_REQUIRE_PYTHON=1: a test may not be skipped)");
    }
    eprintln!("skipped: {why}");
    None
}

/// Whether `python` imports `modules`: the error's last line when not.
fn imports(python: &str, modules: &[&str]) -> Result<(), String> {
    let code = match modules {
        [] => "pass".to_owned(),
        _ => format!("import {}", modules.join(", ")),
    };
    let out = Command::new(python)
        .args(["-c", &code])
        .output()
        .map_err(|e| format!("{python} cannot be run: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = stderr(&out);
    Err(
        match err.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
            Some(line) => line.to_owned(),
            None => format!("`{python} -c {code:?}` failed ({})", out.status),
        },
    )
}

/// `tools/reference`: the code users read and copy (the Python label writer, the Python teacher).
pub fn reference_tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/reference")
}

/// `tools/fixtures`: the Python scripts only the tests run (scripted teachers, interop checker).
pub fn fixture_tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/fixtures")
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
/// changed. Symbolic links are listed with their target, not followed. Any
/// error fails the test naming its path: a root that does not exist or is not
/// a folder, a folder or file that cannot be read (so that a wrong path
/// cannot pass for an unchanged one).
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = walk(dir)
        .into_iter()
        .map(|p| {
            let meta =
                std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let bytes = if meta.file_type().is_symlink() {
                let target =
                    std::fs::read_link(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                format!("-> {}", target.display()).into_bytes()
            } else {
                read(&p)
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

/// Every path under folder `dir` that is not a folder (files and symbolic
/// links, which are not followed), recursively; panics naming the path on
/// any error, and when `dir` does not exist or is not a folder.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for p in list_dir(dir) {
        let t = std::fs::symlink_metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .file_type();
        if t.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The entries of folder `dir` (full paths, sorted); panics naming the path
/// on any error, and when `dir` does not exist or is not a folder.
pub fn list_dir(dir: &Path) -> Vec<PathBuf> {
    let meta = std::fs::metadata(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert!(meta.is_dir(), "{} is not a folder", dir.display());
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .collect();
    out.sort();
    out
}

/// The bytes of file `p`; panics naming it when it cannot be read.
pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Writes example labels of `task` (JSON text or file) for an image shard
/// with the Python reference writer.
pub fn python_example_labels(shard_file: &Path, task: &str, out: &Path) -> String {
    run_python(&[
        reference_tools().join("label_writer.py").to_str().unwrap(),
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
        std::fs::create_dir_all(p.parent().unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
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
