//! `must-ds init`: create an empty dataset.

use std::io::Write;

use must_ds::format::DatasetInfo;
use must_ds::store::Dataset;

#[derive(clap::Args, Debug)]
pub(crate) struct InitArgs {
    /// Dataset root: a folder, file://, s3://bucket/prefix, gs://, az://.
    root: String,
    /// Dataset name (default: the folder name).
    #[arg(long)]
    name: Option<String>,
    /// Free-text description.
    #[arg(long, default_value = "")]
    description: String,
}

pub(crate) fn run(
    a: InitArgs,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let name = a.name.unwrap_or_else(|| {
        a.root
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("dataset")
            .to_owned()
    });
    let info = DatasetInfo {
        name,
        description: a.description,
    };
    let ds = rt.block_on(Dataset::init(&a.root, info))?;
    writeln!(out, "created dataset {} at version 0", ds.url())?;
    Ok(())
}
