//! `must-ds validate`: check every data file of a dataset (or one lone label
//! file); one line per problem, exit code 1 when there is any.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;

use must_ds::audit;
use must_ds::redact::{printable, redact};
use must_ds::store::Dataset;

#[derive(clap::Args, Debug)]
pub(crate) struct ValidateArgs {
    /// Dataset root.
    root: String,
    /// Print JSON for machines.
    #[arg(long)]
    json: bool,
    /// Do not decode images (checksums and labels only).
    #[arg(long)]
    no_decode: bool,
    /// Image shards checked at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
}

/// Returns the exit code: 0 when the dataset is valid, else 1.
pub(crate) fn run(
    a: ValidateArgs,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    if validate(&a.root, a.json, !a.no_decode, a.parallel, rt, out)? {
        Ok(0)
    } else {
        out.flush()?;
        Ok(1)
    }
}

/// Returns whether the dataset is valid.
fn validate(
    root: &str,
    json: bool,
    decode: bool,
    parallel: usize,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let (url, report) = if root.ends_with(".parquet") && std::path::Path::new(root).is_file() {
        let bytes =
            std::fs::read(root).with_context(|| format!("reading {}", printable(&redact(root))))?;
        (
            root.to_owned(),
            audit::validate_label_file(bytes.into(), root),
        )
    } else {
        let ds = rt.block_on(Dataset::open(root))?;
        let b = super::bar(ds.snapshot().images.len() as u64, "image shards");
        let bb = b.clone();
        let progress: Arc<dyn Fn(u64, u64) + Send + Sync> =
            Arc::new(move |done, _| bb.set_position(done));
        let report = rt.block_on(audit::validate(&ds, parallel, decode, Some(progress)))?;
        b.finish_and_clear();
        (ds.url().to_owned(), report)
    };
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        // Problems quote file names, ids and values read from the data.
        for p in &report.problems {
            writeln!(out, "{}", printable(&p.to_string()))?;
        }
        let url = printable(&redact(&url));
        let verdict = if report.problems.is_empty() {
            "no problems".to_string()
        } else {
            format!("{} problem(s)", report.problems.len())
        };
        if url.ends_with(".parquet") {
            writeln!(out, "{url}: {} label rows (values and columns; alignment and checksums need the dataset): {verdict}", report.label_rows)?;
        } else {
            writeln!(
                out,
                "{url}: version {}, {} files ({:.1} MiB checksummed), {} image rows ({} images decoded), {} label rows: {verdict}",
                report.version,
                report.files,
                report.bytes as f64 / 1048576.0,
                report.rows,
                report.images_decoded,
                report.label_rows,
            )?;
        }
    }
    Ok(report.problems.is_empty())
}
