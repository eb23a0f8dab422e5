//! Depth labels: [`DepthMap`] (little-endian float16 per pixel), their value
//! checks, and their Arrow columns (`depth`, `depth_height`, `depth_width`).

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, UInt32Builder};
use arrow_array::ArrayRef;
use half::f16;

use super::shared::{check_map_size, kind_mismatch, MapColumns};
use super::{Label, LabelRef};
use crate::codec::arrow::{BatchColumns, Row};
use crate::error::{Error, Result};
use crate::format::{TaskDef, TaskKind};

/// The kind's name, as [`TaskKind::name`] writes it.
pub(super) const NAME: &str = "depth";

/// A depth map stored as little-endian float16, NaN where invalid.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthMap {
    /// Map height.
    pub height: u32,
    /// Map width.
    pub width: u32,
    /// `height × width × 2` bytes.
    pub depth: Vec<u8>,
}

impl DepthMap {
    /// Converts f32 values to the stored float16.
    pub fn from_f32(height: u32, width: u32, values: &[f32]) -> Self {
        let depth = values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect();
        Self {
            height,
            width,
            depth,
        }
    }

    /// The values as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        self.depth
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect()
    }

    /// The label as a borrowed view.
    pub(super) fn view(&self) -> LabelRef<'_> {
        LabelRef::Depth {
            height: self.height,
            width: self.width,
            depth: &self.depth,
        }
    }

    /// An owned copy of a borrowed view.
    pub(super) fn from_view(height: u32, width: u32, depth: &[u8]) -> Self {
        DepthMap {
            height,
            width,
            depth: depth.to_vec(),
        }
    }

    /// The depth map in `label`, `None` for another kind.
    fn of(label: &Label) -> Option<&Self> {
        match label {
            Label::Depth(d) => Some(d),
            Label::Classification(_) | Label::Detection(_) | Label::Segmentation(_) => None,
        }
    }
}

/// Checks a depth map against `task`: the reason when a value is wrong.
pub(super) fn check(
    height: u32,
    width: u32,
    depth: &[u8],
    task: &TaskDef,
) -> std::result::Result<(), String> {
    match &task.kind {
        TaskKind::Depth { .. } => {}
        TaskKind::Classification { .. }
        | TaskKind::Detection { .. }
        | TaskKind::Segmentation { .. } => return Err(kind_mismatch(NAME, task)),
    }
    check_map_size(height, width, depth.len(), 2, "depth")?;
    if any_f16_infinite(depth) {
        let v = depth
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .find(|v| v.is_infinite())
            .unwrap_or(f32::INFINITY);
        return Err(format!(
            "depth value {v} is infinite (use NaN for invalid pixels)"
        ));
    }
    Ok(())
}

/// Whether a little-endian float16 map holds ±infinity (exponent all ones,
/// mantissa zero), in a vectorizable pass.
fn any_f16_infinite(depth: &[u8]) -> bool {
    depth.chunks_exact(2).fold(false, |acc, c| {
        acc | (u16::from_le_bytes([c[0], c[1]]) & 0x7FFF == 0x7C00)
    })
}

/// The Arrow columns of a depth task in a record batch.
pub(crate) struct Columns(MapColumns);

impl Columns {
    /// Finds and normalizes `depth` and its size.
    pub(crate) fn new(cols: &BatchColumns<'_>) -> Result<Self> {
        Ok(Self(MapColumns::new(cols, "depth")?))
    }

    /// Row `row`'s label (`None` for a null row).
    pub(crate) fn get(&self, row: &Row<'_>) -> Result<Option<LabelRef<'_>>> {
        Ok(self
            .0
            .get(row)?
            .map(|(height, width, depth)| LabelRef::Depth {
                height,
                width,
                depth,
            }))
    }
}

/// Appends the `depth`, `depth_height` and `depth_width` columns to `cols`;
/// `mismatch(i)` is the error for a row `i` of another kind.
pub(crate) fn encode(
    labels: &[Option<Label>],
    cols: &mut Vec<ArrayRef>,
    mismatch: &dyn Fn(usize) -> Error,
) -> Result<()> {
    let n = labels.len();
    let bytes: usize = labels
        .iter()
        .flatten()
        .filter_map(DepthMap::of)
        .map(|d| d.depth.len())
        .sum();
    let mut d = BinaryBuilder::with_capacity(n, bytes);
    let mut h = UInt32Builder::with_capacity(n);
    let mut w = UInt32Builder::with_capacity(n);
    for (i, l) in labels.iter().enumerate() {
        match l.as_ref().map(DepthMap::of) {
            None => {
                d.append_null();
                h.append_null();
                w.append_null();
            }
            Some(Some(x)) => {
                d.append_value(&x.depth);
                h.append_value(x.height);
                w.append_value(x.width);
            }
            Some(None) => return Err(mismatch(i)),
        }
    }
    cols.push(Arc::new(d.finish()));
    cols.push(Arc::new(h.finish()));
    cols.push(Arc::new(w.finish()));
    Ok(())
}
