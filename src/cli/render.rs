//! `must-ds render`: draw a sample with its labels, or a contact sheet.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use must_ds::audit::{render_grid, render_sample, RenderOptions};
use must_ds::store::Dataset;

#[derive(clap::Args, Debug)]
pub(crate) struct RenderArgs {
    /// Dataset root.
    root: String,
    /// The image to draw.
    #[arg(long, conflicts_with_all = ["index", "grid"])]
    image_id: Option<String>,
    /// The image at this row of the dataset (shards in id order).
    #[arg(long, conflicts_with = "grid")]
    index: Option<u64>,
    /// A contact sheet of this many random samples.
    #[arg(long)]
    grid: Option<usize>,
    /// Output PNG file.
    #[arg(long)]
    out: PathBuf,
    /// Only this task (repeat for more).
    #[arg(long = "task")]
    tasks: Vec<String>,
    /// Panel height in pixels.
    #[arg(long, default_value_t = 320)]
    height: u32,
    /// Do not draw boxes scored below this.
    #[arg(long, default_value_t = 0.0)]
    min_score: f32,
    /// Seed of the grid's samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub(crate) fn run(
    a: RenderArgs,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let ds = rt.block_on(Dataset::open(&a.root))?;
    let opts = RenderOptions {
        tasks: (!a.tasks.is_empty()).then_some(a.tasks),
        panel_height: a.height,
        min_score: a.min_score,
    };
    let rendered = match a.grid {
        Some(n) => rt.block_on(render_grid(&ds, n, a.seed, &opts))?,
        None => rt.block_on(render_sample(&ds, a.image_id.as_deref(), a.index, &opts))?,
    };
    let file = a.out;
    rendered
        .image
        .save(&file)
        .with_context(|| format!("writing {}", file.display()))?;
    writeln!(
        out,
        "wrote {} ({}x{})",
        file.display(),
        rendered.image.width(),
        rendered.image.height()
    )?;
    for p in &rendered.problems {
        eprintln!("warning: not drawn: {p}");
    }
    Ok(())
}
