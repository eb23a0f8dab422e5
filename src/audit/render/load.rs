//! Finding one sample (by global row or by image id) and reading its
//! image and labels for drawing.

use super::{RenderOptions, Sample};
use crate::error::{Error, Location, Result};
use crate::format::TaskDef;
use crate::store::Dataset;

/// Reads row `row` of row group `group` of image shard `shard`: the image
/// decoded, and the label of each task `opts` selects.
pub(super) async fn load(
    ds: &Dataset,
    shard: u64,
    group: usize,
    row: usize,
    opts: &RenderOptions,
) -> Result<Sample> {
    let snap = ds.snapshot();
    let tasks: Vec<TaskDef> = match &opts.tasks {
        Some(n) => n
            .iter()
            .map(|t| snap.task(t).cloned())
            .collect::<Result<_>>()?,
        None => snap.tasks.values().cloned().collect(),
    };
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    let rg = ds.read_row_group(shard, group, &names, None).await?;
    let path = snap.shard(shard)?.path.clone();
    let rec = rg.images.get(row).ok_or_else(|| {
        Error::value(
            Location::file(&path),
            format!(
                "row group {group} has {} rows, not the row {row} the log promises",
                rg.images.len()
            ),
        )
    })?;
    let at = (rg.first_row as usize).saturating_add(row);
    let loc = Location::file(&path).at(at, Some(&rec.image_id));
    let bytes = rec.image.as_ref().ok_or_else(|| {
        Error::value(
            loc.clone(),
            "the image is not embedded (uri only); render needs the bytes",
        )
    })?;
    let mut rgb = crate::codec::Rgb::default();
    crate::codec::decode_rgb(bytes, &mut rgb, crate::codec::max_image_pixels())
        .map_err(|e| Error::value(loc.clone(), format!("image does not decode: {e}")))?;
    let image = image::DynamicImage::ImageRgb8(
        image::RgbImage::from_raw(rgb.width, rgb.height, rgb.data)
            .ok_or_else(|| Error::value(loc.clone(), "image does not decode"))?,
    )
    .to_rgba8();
    let labels = tasks
        .iter()
        .map(|t| {
            let label = rg
                .labels
                .get(&t.name)
                .and_then(|l| l.get(row))
                .cloned()
                .flatten();
            (t.clone(), label)
        })
        .collect();
    let locations = tasks
        .iter()
        .map(|t| {
            snap.labels.get(&(t.name.clone(), shard)).map_or_else(
                || loc.clone(),
                |l| Location::file(&l.path).at(at, Some(&rec.image_id)),
            )
        })
        .collect();
    Ok(Sample {
        image_id: rec.image_id.clone(),
        image,
        labels,
        locations,
    })
}

/// (shard, row group, row in group) of global row `index`. Row counts come
/// from the log: sums saturate rather than wrap (a log whose counts add up
/// past 2^64 has no row past that).
pub(super) fn locate(ds: &Dataset, index: u64) -> Result<(u64, usize, usize)> {
    let snap = ds.snapshot();
    let mut first = 0u64;
    for (shard, a) in &snap.images {
        for (g, &n) in a.row_groups.iter().enumerate() {
            if index - first < n {
                let row = usize::try_from(index - first).map_err(|_| {
                    Error::value(
                        Location::file(&a.path),
                        format!(
                            "row group {g} claims {n} rows, more than this machine can address"
                        ),
                    )
                })?;
                return Ok((*shard, g, row));
            }
            first = first.saturating_add(n);
        }
    }
    Err(Error::value(
        Location::file(ds.url()),
        format!("index {index} is past the last row ({first} rows)"),
    ))
}

/// Finds `image_id` by reading the image id column of each shard in turn.
pub(super) async fn find(ds: &Dataset, image_id: &str) -> Result<(u64, usize, usize)> {
    for (shard, a) in &ds.snapshot().images {
        let ids = ds.read_image_ids(*shard).await?;
        if let Some(pos) = ids.iter().position(|i| i == image_id) {
            let mut first = 0usize;
            for (g, &n) in a.row_groups.iter().enumerate() {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if pos - first < n {
                    return Ok((*shard, g, pos - first));
                }
                first = first.saturating_add(n);
            }
            return Err(Error::value(
                Location {
                    image_id: Some(image_id.into()),
                    ..Location::file(&a.path)
                },
                format!(
                    "the image is row {pos} of the file, past the {first} rows its row groups have in the log"
                ),
            ));
        }
    }
    Err(Error::value(
        Location {
            image_id: Some(image_id.into()),
            ..Location::file(ds.url())
        },
        "no such image_id in the dataset",
    ))
}
