//! `must-ds inspect --stats`: read the labels and report what an auditor
//! looks for (class histograms, score, box, pixel and depth distributions,
//! coverage).

use std::io::Write;
use std::sync::Arc;

use must_ds::audit::{self, DatasetStats, StatsOptions, Summary, TaskStats, UnitHistogram};
use must_ds::redact::printable;
use must_ds::store::Dataset;

fn s(x: &Option<Summary>) -> String {
    match x {
        None => "-".into(),
        Some(x) => format!(
            "mean {:.3}, min {:.3}, p5 {:.3}, p50 {:.3}, p95 {:.3}, max {:.3}{}",
            x.mean,
            x.min,
            x.p5,
            x.p50,
            x.p95,
            x.max,
            if x.approximate_quantiles {
                " (quantiles from a sample)"
            } else {
                ""
            }
        ),
    }
}

fn hist(h: &UnitHistogram) -> String {
    format!("0 |{}| 1  {:?}", h.sparkline(), h.bins)
}

pub(super) fn print_stats(st: &DatasetStats, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "statistics of {}: {} of {} rows{}",
        st.version
            .map_or("the file".to_string(), |v| format!("version {v}")),
        st.rows_read,
        st.rows_total,
        if st.sampled { " (uniform sample)" } else { "" }
    )?;
    for (name, t) in &st.tasks {
        writeln!(
            out,
            "\n{}  ({} rows read without a label)",
            printable(name),
            st.rows_without_labels.get(name).copied().unwrap_or(0)
        )?;
        let classes = |v: &[audit::ClassCount], out: &mut dyn Write| -> std::io::Result<()> {
            for c in v {
                let n = c
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("class {}", c.class));
                // Class names come from the task definition in the log.
                writeln!(
                    out,
                    "      {:>6} {:>10}  {:5.1}%  {}",
                    c.class,
                    c.count,
                    100.0 * c.fraction,
                    printable(&n)
                )?;
            }
            Ok(())
        };
        match t {
            TaskStats::Classification(c) => {
                writeln!(out, "  labeled rows      {}", c.labeled)?;
                writeln!(out, "  top-1 classes     {} distinct; the 20 most frequent ({} rows in the long tail):", c.distinct_top1, c.long_tail_rows)?;
                classes(&c.top1_classes, out)?;
                writeln!(out, "  top-1 probability {}", s(&c.top1_prob))?;
                writeln!(out, "                    {}", hist(&c.top1_prob_histogram))?;
                writeln!(out, "  entropy (bits)    {}", s(&c.entropy_bits))?;
                writeln!(out, "  top-k kept mass   {}", s(&c.kept_mass))?;
            }
            TaskStats::Detection(d) => {
                writeln!(
                    out,
                    "  labeled rows      {} ({} with no box), {} boxes",
                    d.labeled, d.zero_box_images, d.boxes
                )?;
                writeln!(out, "  boxes per image   {}", s(&d.boxes_per_image))?;
                writeln!(out, "  scores            {}", s(&d.scores))?;
                writeln!(out, "                    {}", hist(&d.score_histogram))?;
                writeln!(
                    out,
                    "  below min_score_written {}: {} boxes",
                    d.min_score_written, d.below_min_score
                )?;
                writeln!(out, "  width (px)        {}", s(&d.width_px))?;
                writeln!(out, "  height (px)       {}", s(&d.height_px))?;
                writeln!(out, "  area / image      {}", s(&d.relative_area))?;
                writeln!(out, "  aspect (w/h)      {}", s(&d.aspect))?;
                writeln!(out, "  outside the image {} boxes", d.outside_image)?;
                writeln!(out, "  classes by count:")?;
                classes(&d.classes, out)?;
            }
            TaskStats::Segmentation(m) => {
                writeln!(
                    out,
                    "  labeled rows      {}, {} pixels, {:.2}% ignore_index",
                    m.labeled,
                    m.pixels,
                    100.0 * m.ignore_fraction
                )?;
                writeln!(out, "  pixels per class:")?;
                classes(&m.classes, out)?;
                writeln!(out, "  confidence        {}", s(&m.confidence))?;
                if m.confidence.is_some() {
                    writeln!(out, "                    {}", hist(&m.confidence_histogram))?;
                }
                let sizes: Vec<String> = m
                    .map_sizes
                    .iter()
                    .map(|x| format!("{} ×{}", x.size, x.count))
                    .collect();
                writeln!(out, "  map sizes         {}", sizes.join(", "))?;
                writeln!(out, "  image/map width   {}", s(&m.image_to_map_ratio))?;
            }
            TaskStats::Depth(d) => {
                writeln!(
                    out,
                    "  labeled rows      {}, {} pixels, {:.2}% NaN",
                    d.labeled,
                    d.pixels,
                    100.0 * d.nan_fraction
                )?;
                writeln!(out, "  values            {}", s(&d.values))?;
                let sizes: Vec<String> = d
                    .map_sizes
                    .iter()
                    .map(|x| format!("{} ×{}", x.size, x.count))
                    .collect();
                writeln!(out, "  map sizes         {}", sizes.join(", "))?;
                writeln!(out, "  image/map width   {}", s(&d.image_to_map_ratio))?;
            }
        }
    }
    if st.missing.is_empty() {
        writeln!(
            out,
            "\ncoverage: every selected (task, shard) pair has labels"
        )?;
    } else {
        writeln!(
            out,
            "\ncoverage: {} (task, shard) pairs have no label file:",
            st.missing.len()
        )?;
        for m in st.missing.iter().take(50) {
            writeln!(out, "  {} shard {}", printable(&m.task), m.shard)?;
        }
    }
    Ok(())
}

pub(super) fn stats(
    ds: &Dataset,
    opts: StatsOptions,
    json: bool,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let b = crate::cli::bar(0, "row groups");
    let bb = b.clone();
    let progress: audit::StatsProgress = Arc::new(move |done, todo| {
        bb.set_length(todo);
        bb.set_position(done);
    });
    let st = rt.block_on(audit::dataset_stats(ds, &opts, Some(progress)))?;
    b.finish_and_clear();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&st)?)?;
    } else {
        print_stats(&st, out)?;
    }
    Ok(())
}
