//! `must-ds vacuum`: delete data files that no commit references once they
//! are older than a grace period.

use std::io::Write;

use anyhow::Context;

use must_ds::store::vacuum::parse_duration;
use must_ds::store::Dataset;

#[derive(clap::Args, Debug)]
pub(crate) struct VacuumArgs {
    /// Dataset root.
    root: String,
    /// Grace period: only orphans older than this go (30m, 12h, 7d...).
    /// Keep it longer than any write takes, or an upload in flight may go.
    #[arg(long, default_value = "7d")]
    older_than: String,
    /// Only list what would be deleted.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON for machines.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(
    a: VacuumArgs,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let older_than = &a.older_than;
    let grace = parse_duration(older_than)
        .with_context(|| format!("--older-than {older_than:?}: use 30s, 15m, 2h, 7d or 1w"))?;
    let mut ds = rt.block_on(Dataset::open(&a.root))?;
    let r = rt.block_on(ds.vacuum(grace, a.dry_run))?;
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
        return Ok(());
    }
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    for f in &r.deleted {
        writeln!(out, "{verb} {f}")?;
    }
    writeln!(
        out,
        "{verb} {} orphaned file(s), {:.1} MiB; kept {} referenced and {} orphan(s) younger than {older_than}",
        r.deleted.len(),
        r.bytes as f64 / 1048576.0,
        r.referenced,
        r.too_young.len()
    )?;
    Ok(())
}
