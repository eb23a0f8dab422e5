//! `must-ds add-labels`: label files of any engine, matched to image shards
//! by image id (or, for a file already aligned with one shard, checked and
//! committed as it is).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use futures::StreamExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use must_ds::read::StoreReader;
use must_ds::store::{open_location, Dataset};
use must_ds::write::{check_label_file, AlignOptions, BoxFormat, LabelAligner};

#[derive(clap::Args, Debug)]
pub(crate) struct AddLabelsArgs {
    /// Dataset root.
    root: String,
    /// Task name.
    #[arg(long)]
    task: String,
    /// Only this image shard (default: every shard, matched by image_id).
    #[arg(long)]
    shard: Option<u64>,
    /// Parquet files, folders of part files (Hive partition folders
    /// included; names starting with `.` or `_` skipped) or globs (`*`,
    /// `?`, `**`), local or on a store (s3://…).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// Replace labels the shards already have for this task.
    #[arg(long, conflicts_with = "skip_labeled")]
    replace: bool,
    /// Leave shards that already have labels for this task as they are.
    #[arg(long)]
    skip_labeled: bool,
    /// Column names of the input: COLUMN=INPUT_COLUMN, comma separated
    /// (e.g. boxes=pred_boxes,scores=conf,image_id=key).
    #[arg(long, value_delimiter = ',', value_name = "COLUMN=INPUT")]
    map: Vec<String>,
    /// Boxes as x0,y0,x1,y1 pixels (xyxy), x,y,w,h pixels (xywh), or
    /// x0,y0,x1,y1 fractions of the image size (xyxy-normalized).
    #[arg(long, default_value = "xyxy")]
    box_format: BoxFormat,
    /// For a top-k task given all C probabilities: how many to keep.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// MiB of labels held for shards not complete yet before the
    /// largest is spilled to a temporary file.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    memory: u64,
}

/// One input file.
enum Input {
    Local(PathBuf),
    Store {
        store: std::sync::Arc<dyn object_store::ObjectStore>,
        path: object_store::path::Path,
        size: u64,
        shown: String,
    },
}

impl Input {
    fn name(&self) -> String {
        match self {
            Input::Local(p) => p.display().to_string(),
            Input::Store { shown, .. } => shown.clone(),
        }
    }
}

/// Names engines give files that hold no rows (`_SUCCESS`, `.crc`, `_temporary/`).
fn hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// `*` and `?` within a path segment, `**` across segments.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            Some(b'*') => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != b'/')
                .any(|i| go(&p[1..], &t[i..])),
            Some(b'?') => t.first().is_some_and(|&c| c != b'/') && go(&p[1..], &t[1..]),
            Some(&c) => t.first() == Some(&c) && go(&p[1..], &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Files of a local folder, recursively, sorted, without hidden ones.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for e in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !hidden(&e.file_name().to_string_lossy()))
    {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        if e.file_type().is_file() {
            out.push(e.into_path());
        }
    }
    Ok(())
}

/// Every input file the paths name.
async fn list_inputs(paths: &[String]) -> anyhow::Result<Vec<Input>> {
    let mut out = vec![];
    for p in paths {
        if p.contains("://") && !p.starts_with("file://") {
            let (base, pattern) = match p.find(['*', '?']) {
                Some(i) => {
                    let cut = p[..i].rfind('/').map_or(0, |j| j + 1);
                    (&p[..cut], Some(&p[cut..]))
                }
                None => (p.as_str(), None),
            };
            let loc = open_location(base.trim_end_matches('/'), false)?;
            let mut listed = vec![];
            let mut stream = loc.store.list(Some(&loc.root));
            while let Some(meta) = stream.next().await {
                let meta = meta.with_context(|| format!("listing {}", loc.url))?;
                let rel = meta.location.as_ref()[loc.root.as_ref().len()..]
                    .trim_start_matches('/')
                    .to_owned();
                if rel.split('/').any(hidden) {
                    continue;
                }
                if pattern.is_some_and(|g| !glob_match(g, &rel)) {
                    continue;
                }
                listed.push((meta.location, meta.size, rel));
            }
            if listed.is_empty() {
                // A single object: its own name is the root.
                if let Ok(meta) = object_store::ObjectStoreExt::head(&loc.store, &loc.root).await {
                    listed.push((meta.location, meta.size, String::new()));
                }
            }
            listed.sort_by(|a, b| a.2.cmp(&b.2));
            if listed.is_empty() {
                bail!("{p}: no files");
            }
            for (path, size, rel) in listed {
                let shown = if rel.is_empty() {
                    loc.url.clone()
                } else {
                    format!("{}/{rel}", loc.url)
                };
                out.push(Input::Store {
                    store: loc.store.clone(),
                    path,
                    size,
                    shown,
                });
            }
            continue;
        }
        let local = p.strip_prefix("file://").unwrap_or(p);
        let before = out.len();
        if is_glob(local) {
            let i = local.find(['*', '?']).unwrap_or(0);
            let cut = local[..i].rfind('/').map_or(0, |j| j + 1);
            let (base, pattern) = (&local[..cut], &local[cut..]);
            let base = if base.is_empty() { "." } else { base };
            let mut files = vec![];
            walk(Path::new(base), &mut files)?;
            for f in files {
                let rel = f
                    .strip_prefix(base)
                    .unwrap_or(&f)
                    .to_string_lossy()
                    .into_owned();
                if glob_match(pattern, &rel) {
                    out.push(Input::Local(f));
                }
            }
        } else {
            let path = Path::new(local);
            let meta = std::fs::metadata(path).with_context(|| format!("reading {local}"))?;
            if meta.is_dir() {
                let mut files = vec![];
                walk(path, &mut files)?;
                out.extend(files.into_iter().map(Input::Local));
            } else {
                out.push(Input::Local(path.to_path_buf()));
            }
        }
        if out.len() == before {
            bail!("{p}: no files");
        }
    }
    Ok(out)
}

/// Streams every input's record batches into the aligner.
async fn feed(aligner: &mut LabelAligner<'_>, inputs: &[Input]) -> anyhow::Result<()> {
    for input in inputs {
        let name = input.name();
        let mut row = 0usize;
        match input {
            Input::Local(p) => {
                let f = std::fs::File::open(p).with_context(|| format!("reading {name}"))?;
                let b = ParquetRecordBatchReaderBuilder::try_new(f)
                    .map_err(|e| must_ds::Error::parquet(&name, e))?;
                must_ds::read::check_footer_counts(b.metadata(), &name)?;
                let reader = b
                    .with_batch_size(8192)
                    .build()
                    .map_err(|e| must_ds::Error::parquet(&name, e))?;
                for batch in reader {
                    let batch = batch.map_err(|e| must_ds::Error::arrow(&name, e))?;
                    aligner.push(&batch, &name, row).await?;
                    row += batch.num_rows();
                }
            }
            Input::Store {
                store, path, size, ..
            } => {
                let reader = StoreReader::new(store.clone(), path.clone(), Some(*size));
                let b = ParquetRecordBatchStreamBuilder::new(reader)
                    .await
                    .map_err(|e| must_ds::Error::parquet(&name, e))?;
                must_ds::read::check_footer_counts(b.metadata(), &name)?;
                let mut stream = b
                    .with_batch_size(8192)
                    .build()
                    .map_err(|e| must_ds::Error::parquet(&name, e))?;
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(|e| must_ds::Error::parquet(&name, e))?;
                    aligner.push(&batch, &name, row).await?;
                    row += batch.num_rows();
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn run(
    a: AddLabelsArgs,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut ds = rt.block_on(Dataset::open(&a.root))?;
    let def = ds.snapshot().task(&a.task)?.clone();
    let mut columns = BTreeMap::new();
    for m in &a.map {
        let Some((to, from)) = m.split_once('=') else {
            bail!("--map {m:?}: expected COLUMN=INPUT_COLUMN, e.g. boxes=pred_boxes");
        };
        columns.insert(to.trim().to_owned(), from.trim().to_owned());
    }
    let inputs = rt.block_on(list_inputs(&a.paths))?;
    // A file already aligned with its shard is committed as it is.
    let plain = columns.is_empty() && a.box_format == BoxFormat::Xyxy;
    if let (Some(shard), [Input::Local(file)], true) = (a.shard, &inputs[..], plain) {
        let image_shard = ds.snapshot().shard(shard)?.clone();
        let labeled = ds.snapshot().labels.contains_key(&(a.task.clone(), shard));
        if labeled && a.skip_labeled {
            writeln!(
                out,
                "image shard {shard} already has labels of task {:?}: skipped",
                a.task
            )?;
            return Ok(());
        }
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let ids = rt.block_on(ds.read_image_ids(shard))?;
        let name = file.display().to_string();
        if let Ok(report) = check_label_file(
            &def,
            shard,
            &ids,
            &image_shard.row_groups,
            bytes.clone().into(),
            &name,
        ) {
            let encoded = must_ds::write::EncodedFile {
                bytes: bytes.into(),
                rows: report.rows,
                row_groups: report.row_groups,
                sources: Default::default(),
                labeled: report.labeled,
            };
            let added = rt.block_on(ds.add_label_file(&a.task, shard, encoded, a.replace))?;
            writeln!(
                out,
                "committed labels of task {:?} for shard {shard}: {} of {} rows labeled, {} (version {})",
                a.task,
                added.labeled,
                added.rows,
                added.path,
                ds.version()
            )?;
            return Ok(());
        }
    }
    let opts = AlignOptions {
        shard: a.shard,
        replace: a.replace,
        skip_labeled: a.skip_labeled,
        columns,
        box_format: a.box_format,
        top_k: a.top_k,
        memory_bytes: a.memory.saturating_mul(1 << 20),
        spill_dir: None,
    };
    let report = rt.block_on(async {
        let mut aligner = LabelAligner::new(&mut ds, &a.task, opts).await?;
        feed(&mut aligner, &inputs).await?;
        anyhow::Ok(aligner.finish().await?)
    })?;
    for s in &report.shards {
        if s.skipped {
            writeln!(
                out,
                "image shard {} already has labels of task {:?}: skipped",
                s.shard, a.task
            )?;
        } else {
            writeln!(
                out,
                "committed labels of task {:?} for shard {}: {} of {} rows labeled, {}",
                a.task, s.shard, s.labeled, s.rows, s.path
            )?;
        }
    }
    let committed = report.shards.iter().filter(|s| !s.skipped).count();
    writeln!(
        out,
        "{} input rows from {} file(s): {committed} shard(s) committed (version {}), {} image id(s) of them without a label (absent), {} row(s) of already labeled shards skipped{}",
        report.rows_in,
        inputs.len(),
        ds.version(),
        report.missing(),
        report.rows_skipped,
        if report.spills > 0 {
            format!(", {} spill(s) to disk", report.spills)
        } else {
            String::new()
        }
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*.parquet", "a.parquet"));
        assert!(!glob_match("*.parquet", "d/a.parquet"));
        assert!(glob_match("**/*.parquet", "d/e/a.parquet"));
        assert!(glob_match("**/*.parquet", "a.parquet"));
        assert!(glob_match("part-?.parquet", "part-1.parquet"));
        assert!(!glob_match("part-?.parquet", "part-12.parquet"));
        assert!(glob_match("y=*/part-*", "y=2024/part-0001"));
    }
}
