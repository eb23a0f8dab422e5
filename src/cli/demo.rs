//! `must-ds demo`: the whole flow on a local folder ([`must_ds::demo`]), then
//! the summary `inspect` prints.

use std::io::Write;
use std::path::PathBuf;

use must_ds::store::Dataset;
use must_ds::write::BlobCodec;

use super::inspect::{print_summary, summarize};

#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Where to build it (a previous demo dataset there is replaced).
    #[arg(default_value = "must-demo")]
    dir: PathBuf,
    /// Images to make (crops and flips of the 7 bundled photos; default 336).
    #[arg(long, default_value_t = 336)]
    images: usize,
    /// Segmentation masks (with confidence) and depth maps at the image's
    /// full resolution, as teachers that upsample their logits write
    /// them (default: masks at 1/4 and depth at 1/8 of the image).
    #[arg(long)]
    full_res_maps: bool,
    /// Compression of the mask, confidence and depth columns: zstd, lz4 or none.
    #[arg(long, default_value = "lz4")]
    blob_codec: BlobCodec,
}

pub(crate) fn run(
    a: DemoArgs,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let dir = &a.dir;
    must_ds::demo::create(dir, a.images, a.full_res_maps, a.blob_codec, rt, out)?;
    let ds = rt.block_on(Dataset::open(&dir.to_string_lossy()))?;
    writeln!(out, "\n$ must-ds inspect {}", dir.display())?;
    print_summary(&summarize(ds.url(), ds.snapshot()), out)?;
    Ok(())
}
