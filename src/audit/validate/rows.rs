//! Checks row by row, one row group at a time: images (exactly one of
//! image and uri, decoding to their recorded size) and labels (values per
//! the codec's checks of each kind, alignment with the image shard).

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

use super::{from_error, FileCheck, Problem, ValidateReport};
use crate::codec::{batch_to_labels, normalize_column};
use crate::error::{Error, Location, Result};
use crate::format::{AddImages, AddLabels};
use crate::store::Dataset;

/// The image ids of one row group, in row order.
pub(super) struct GroupImages {
    pub(super) ids: Vec<String>,
}

/// Checks row group `g` of an image shard whose file is `size` bytes;
/// `None` when it cannot be read (reported).
#[allow(clippy::too_many_arguments)]
pub(super) async fn check_image_group(
    ds: &Dataset,
    a: &AddImages,
    size: u64,
    g: usize,
    first_row: usize,
    out: &mut FileCheck,
    report: &mut ValidateReport,
    decode: bool,
) -> Option<GroupImages> {
    // The actual size: a file whose size differs from the log's is still
    // read as far as it goes, to locate what else is wrong.
    let batches = match ds
        .read_batches(&a.path, Some(size), Some(vec![g]), None)
        .await
    {
        Ok(b) => b,
        Err(e) => {
            let mut p = from_error(&a.path, e);
            p.what = format!("row group {g}: {}", p.what);
            out.push(p);
            return None;
        }
    };
    let loc = Location::file(&a.path);
    let mut ids = vec![];
    let mut jobs = vec![];
    let mut row = first_row;
    for b in &batches {
        match image_columns(b, &loc) {
            Err(e) => {
                out.push(from_error(&a.path, e));
                return None;
            }
            Ok((id, image, uri, w, h)) => {
                for i in 0..b.num_rows() {
                    let image_id = id.value(i).to_owned();
                    let at = |what: String| Problem {
                        file: a.path.clone(),
                        row: Some(row + i),
                        image_id: Some(image_id.clone()),
                        what,
                    };
                    let has_image = image.as_ref().is_some_and(|c| !c.is_null(i));
                    let has_uri = uri.as_ref().is_some_and(|c| !c.is_null(i));
                    if has_image == has_uri {
                        out.push(at("exactly one of image and uri must be set".into()));
                    }
                    if decode && has_image {
                        let bytes = bytes::Bytes::copy_from_slice(
                            image
                                .as_ref()
                                .map(|c| c.as_binary::<i32>().value(i))
                                .unwrap_or_default(),
                        );
                        let (w, h) = (w.value(i), h.value(i));
                        jobs.push((row + i, image_id.clone(), bytes, w, h));
                    }
                    ids.push(image_id);
                }
                row += b.num_rows();
            }
        }
    }
    // Decoding is CPU work: off the runtime's threads.
    let max_pixels = crate::codec::max_image_pixels();
    let decoded = tokio::task::spawn_blocking(move || {
        let mut rgb = crate::codec::Rgb::default();
        jobs.into_iter()
            .map(|(row, id, bytes, w, h)| {
                // The loader's decoder and limit: validate is at least as
                // strict as the loader.
                let what = match crate::codec::decode_rgb(&bytes, &mut rgb, max_pixels) {
                    Ok(()) if (rgb.width, rgb.height) != (w, h) => Some(format!(
                        "decodes to {}x{} but width/height say {w}x{h}",
                        rgb.width, rgb.height
                    )),
                    Ok(()) => None,
                    Err(e) => Some(format!("image does not decode: {e}")),
                };
                (row, id, what)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    report.images_decoded += decoded.len() as u64;
    for (row, id, what) in decoded {
        if let Some(what) = what {
            out.push(Problem {
                file: a.path.clone(),
                row: Some(row),
                image_id: Some(id),
                what,
            });
        }
    }
    report.rows += ids.len() as u64;
    Some(GroupImages { ids })
}

type ImageColumns = (
    arrow_array::StringArray,
    Option<arrow_array::ArrayRef>,
    Option<arrow_array::ArrayRef>,
    arrow_array::UInt32Array,
    arrow_array::UInt32Array,
);

fn image_columns(b: &RecordBatch, loc: &Location) -> Result<ImageColumns> {
    let ids = crate::codec::image_ids(b, loc)?;
    let image = normalize_column(b, "image", &DataType::Binary, loc, true)?;
    let uri = normalize_column(b, "uri", &DataType::Utf8, loc, true)?;
    let w = normalize_column(b, "width", &DataType::UInt32, loc, true)?
        .map(|c| c.as_primitive::<UInt32Type>().clone());
    let h = normalize_column(b, "height", &DataType::UInt32, loc, true)?
        .map(|c| c.as_primitive::<UInt32Type>().clone());
    match (w, h) {
        (Some(w), Some(h)) => Ok((ids, image, uri, w, h)),
        _ => Err(Error::schema(loc.clone(), "missing width or height")),
    }
}

/// Checks row group `g` of a label file; `false` when the file cannot be
/// read further (reported once).
#[allow(clippy::too_many_arguments)]
pub(super) async fn check_label_group(
    ds: &Dataset,
    l: &AddLabels,
    size: u64,
    g: usize,
    first_row: usize,
    ids: &[String],
    out: &mut FileCheck,
    report: &mut ValidateReport,
) -> bool {
    let task = match ds.snapshot().task(&l.task) {
        Ok(t) => t.clone(),
        Err(e) => {
            out.push(from_error(&l.path, e));
            return false;
        }
    };
    let batches = match ds
        .read_batches(&l.path, Some(size), Some(vec![g]), None)
        .await
    {
        Ok(b) => b,
        Err(e) => {
            let mut p = from_error(&l.path, e);
            p.what = format!("row group {g}: {}", p.what);
            out.push(p);
            return false;
        }
    };
    let loc = Location::file(&l.path);
    let mut row = first_row;
    let mut got_ids = vec![];
    for b in &batches {
        match batch_to_labels(&task, b, &loc, row) {
            Err(e) => {
                out.push(from_error(&l.path, e));
                return false;
            }
            Ok((bids, labels)) => {
                for (i, (id, label)) in bids.iter().zip(&labels).enumerate() {
                    if let Some(label) = label {
                        if let Err(what) = label.check(&task) {
                            out.push(Problem {
                                file: l.path.clone(),
                                row: Some(row + i),
                                image_id: Some(id.clone()),
                                what,
                            });
                        }
                    }
                }
                report.label_rows += bids.len() as u64;
                row += b.num_rows();
                got_ids.extend(bids);
            }
        }
    }
    if got_ids.len() != ids.len() {
        out.push(Problem {
            file: l.path.clone(),
            row: None,
            image_id: None,
            what: format!(
                "not aligned with image shard {}: row group {g} has {} rows, the shard's has {}",
                l.shard,
                got_ids.len(),
                ids.len()
            ),
        });
        return true;
    }
    if let Some(i) = (0..ids.len()).find(|&i| got_ids[i] != ids[i]) {
        out.push(Problem {
            file: l.path.clone(),
            row: Some(first_row + i),
            image_id: Some(got_ids[i].clone()),
            what: format!(
                "not aligned with image shard {}: the shard has {:?} at this row",
                l.shard, ids[i]
            ),
        });
    }
    true
}
