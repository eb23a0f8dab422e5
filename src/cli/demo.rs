//! `must-ds demo`: the whole flow on a local folder ([`must_ds::demo`]), then
//! the summary `inspect` prints.

use std::io::Write;
use std::path::Path;

use must_ds::store::Dataset;
use must_ds::write::BlobCodec;

pub(crate) fn run(
    dir: &Path,
    images: usize,
    full_res_maps: bool,
    codec: BlobCodec,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    must_ds::demo::create(dir, images, full_res_maps, codec, rt, out)?;
    let ds = rt.block_on(Dataset::open(&dir.to_string_lossy()))?;
    writeln!(out, "\n$ must-ds inspect {}", dir.display())?;
    super::inspect::print_summary(&super::inspect::summarize(ds.url(), ds.snapshot()), out)?;
    Ok(())
}
