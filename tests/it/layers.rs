//! The crate's layering, as docs/ARCHITECTURE.md draws it: no module of
//! `src/` names a module of a later stage in the data flow, and no source
//! file grows past about 600 lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The library's top-level modules in data-flow order: each may use those
/// before it, never one after it.
const LAYERS: &[&str] = &[
    "redact", "error", "format", "codec", "store", "write", "ingest", "read", "loader", "torch",
    "teacher", "audit", "demo",
];

/// Items the crate root re-exports, and the module each comes from.
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("Error", "error"),
    ("Result", "error"),
    ("Dataset", "store"),
    ("DatasetOptions", "store"),
    ("Snapshot", "store"),
    ("Transaction", "store"),
];

const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    out.extend(
        crate::util::walk(dir)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "rs")),
    );
}

/// The top-level module a file of `src/` belongs to (`None`: the crate
/// root or the binary, which may use everything).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_owned();
    (!["lib", "main", "cli"].contains(&name.as_str())).then_some(name)
}

/// The modules a file names through `crate::`, with the line of each use
/// (comments left out).
fn uses(text: &str) -> Vec<(String, usize)> {
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let module = ROOT_ITEMS
                .iter()
                .find(|(item, _)| *item == name)
                .map_or(name.clone(), |(_, m)| m.to_string());
            out.push((module, n + 1));
        }
    }
    out
}

#[test]
fn no_module_uses_a_later_stage() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let rank: BTreeMap<&str, usize> = LAYERS.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let mut wrong = vec![];
    let mut seen = 0;
    for f in &files {
        let Some(module) = module_of(&src, f) else {
            continue;
        };
        let own = *rank
            .get(module.as_str())
            .unwrap_or_else(|| panic!("{}: module {module:?} is not in LAYERS", f.display()));
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (used, line) in uses(&text) {
            seen += 1;
            let Some(&r) = rank.get(used.as_str()) else {
                panic!(
                    "{}:{line}: crate::{used} is neither a layer nor a known root item",
                    f.display()
                );
            };
            if r > own {
                wrong.push(format!(
                    "{}:{line}: {module} uses {used}, a later stage",
                    f.display()
                ));
            }
        }
    }
    assert!(
        seen > 100,
        "only {seen} crate:: paths found: the scan is broken"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_scan_sees_a_backward_use() {
    let text = "use crate::loader::Batch;\n// crate::audit in a comment\nfn f() -> crate::Result<()> { Ok(()) }";
    assert_eq!(
        uses(text),
        vec![("loader".to_string(), 1), ("error".to_string(), 3)]
    );
}

#[test]
fn no_source_file_is_over_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    for dir in ["src", "tests", "benches", "examples", "python/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "only {} files found", files.len());
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text =
                std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let n = text.lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// The loader's data stages in flow order: a stage's file names (through
/// `super::`) only stages before it. `mod.rs`, `builder.rs` and
/// `epochs.rs` assemble the stages and may use them all.
const LOADER_STAGES: &[&str] = &[
    "plan",
    "batch",
    "corrupt",
    "metrics",
    "augment",
    "config",
    "fetch",
    "group",
    "shared",
    "coordinator",
    "collate",
    "worker",
];

#[test]
fn no_loader_stage_uses_a_later_one() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/loader");
    let rank = |m: &str| LOADER_STAGES.iter().position(|s| *s == m);
    let mut wrong = vec![];
    for stage in LOADER_STAGES {
        let file = ["rs", "mod.rs"]
            .iter()
            .map(|x| match *x {
                "rs" => dir.join(format!("{stage}.rs")),
                _ => dir.join(stage).join("mod.rs"),
            })
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("no file for the loader stage {stage}"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("super::") {
                let name: String = code[i + "super::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if let (Some(used), Some(own)) = (rank(&name), rank(stage)) {
                    if used > own {
                        wrong.push(format!("{}:{}: {stage} uses {name}", file.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
