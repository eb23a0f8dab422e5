//! Segmentation labels: [`SegMap`] (a mask in the task's dtype with optional
//! per-pixel confidence), their value checks, and their Arrow columns
//! (`mask`, `mask_height`, `mask_width` and the optional `confidence`).

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};

use super::shared::{check_map_size, kind_mismatch, MapColumns};
use super::{Label, LabelRef};
use crate::codec::arrow::{BatchColumns, Row};
use crate::error::{Error, Result};
use crate::format::{TaskDef, TaskKind};

/// The kind's name, as [`TaskKind::name`] writes it.
pub(super) const NAME: &str = "segmentation";

/// A segmentation map: raw row-major mask in the task's dtype (little-endian),
/// with an optional per-pixel confidence (`round(255 × p)`).
#[derive(Debug, Clone, PartialEq)]
pub struct SegMap {
    /// Map height.
    pub height: u32,
    /// Map width.
    pub width: u32,
    /// `height × width × dtype size` bytes.
    pub mask: Vec<u8>,
    /// `height × width` bytes, when the teacher wrote confidences.
    pub confidence: Option<Vec<u8>>,
}

impl SegMap {
    /// A u8 map.
    pub fn from_u8(height: u32, width: u32, mask: Vec<u8>) -> Self {
        Self {
            height,
            width,
            mask,
            confidence: None,
        }
    }

    /// A u16 map.
    pub fn from_u16(height: u32, width: u32, mask: &[u16]) -> Self {
        let bytes = mask.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self {
            height,
            width,
            mask: bytes,
            confidence: None,
        }
    }

    /// Adds confidences from probabilities in [0, 1].
    pub fn with_confidence_probs(mut self, probs: &[f32]) -> Self {
        self.confidence = Some(
            probs
                .iter()
                .map(|p| (p.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect(),
        );
        self
    }

    /// The class id of each pixel, whatever the dtype (`size` bytes each).
    pub fn values(&self, size: usize) -> Vec<u32> {
        match size {
            2 => self
                .mask
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
                .collect(),
            _ => self.mask.iter().map(|&v| v as u32).collect(),
        }
    }

    /// The label as a borrowed view.
    pub(super) fn view(&self) -> LabelRef<'_> {
        LabelRef::Segmentation {
            height: self.height,
            width: self.width,
            mask: &self.mask,
            confidence: self.confidence.as_deref(),
        }
    }

    /// An owned copy of a borrowed view.
    pub(super) fn from_view(
        height: u32,
        width: u32,
        mask: &[u8],
        confidence: Option<&[u8]>,
    ) -> Self {
        SegMap {
            height,
            width,
            mask: mask.to_vec(),
            confidence: confidence.map(<[u8]>::to_vec),
        }
    }

    /// The segmentation map in `label`, `None` for another kind.
    fn of(label: &Label) -> Option<&Self> {
        match label {
            Label::Segmentation(m) => Some(m),
            Label::Classification(_) | Label::Detection(_) | Label::Depth(_) => None,
        }
    }
}

/// Checks a segmentation map against `task`: the reason when a value is wrong.
pub(super) fn check(
    height: u32,
    width: u32,
    mask: &[u8],
    confidence: Option<&[u8]>,
    task: &TaskDef,
) -> std::result::Result<(), String> {
    let (num_classes, dtype, ignore_index) = match &task.kind {
        TaskKind::Segmentation {
            num_classes,
            dtype,
            ignore_index,
            ..
        } => (*num_classes, *dtype, *ignore_index),
        TaskKind::Classification { .. } | TaskKind::Detection { .. } | TaskKind::Depth { .. } => {
            return Err(kind_mismatch(NAME, task))
        }
    };
    check_map_size(height, width, mask.len(), dtype.size(), "mask")?;
    if let Some(c) = confidence {
        check_map_size(height, width, c.len(), 1, "confidence")?;
    }
    // A vectorizable pass first: the largest value that is not
    // ignore_index must be a class id. The slow search for the
    // value to report only runs when something is wrong.
    let ig = ignore_index;
    let max_class = match dtype.size() {
        1 => max_u8_except(mask, ig),
        _ => max_u16_except(mask, ig),
    };
    if max_class >= num_classes {
        let v = mask_values(mask, dtype.size())
            .find(|&v| v >= num_classes && v != ig)
            .unwrap_or(max_class);
        return Err(format!(
            "mask value {v} is neither a class id below {num_classes} nor ignore_index {ignore_index}"
        ));
    }
    Ok(())
}

/// Largest u8 value that is not `ignore` (0 when none), in a vectorizable pass.
fn max_u8_except(mask: &[u8], ignore: u32) -> u32 {
    match u8::try_from(ignore) {
        Ok(ig) => mask
            .iter()
            .fold(0u8, |m, &v| m.max(if v == ig { 0 } else { v })) as u32,
        Err(_) => mask.iter().fold(0u8, |m, &v| m.max(v)) as u32,
    }
}

/// Largest little-endian u16 value that is not `ignore` (0 when none).
fn max_u16_except(mask: &[u8], ignore: u32) -> u32 {
    let ig = u16::try_from(ignore).ok();
    mask.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .fold(0u16, |m, v| m.max(if Some(v) == ig { 0 } else { v })) as u32
}

/// The mask's values, `size` bytes each (little-endian).
fn mask_values(mask: &[u8], size: usize) -> impl Iterator<Item = u32> + '_ {
    let step = size.max(1);
    mask.chunks_exact(step).map(move |c| match step {
        2 => u16::from_le_bytes([c[0], c[1]]) as u32,
        _ => c[0] as u32,
    })
}

/// The Arrow columns of a segmentation task in a record batch.
pub(crate) struct Columns {
    map: MapColumns,
    confidence: Option<ArrayRef>,
}

impl Columns {
    /// Finds and normalizes `mask`, its size and `confidence` when present.
    pub(crate) fn new(cols: &BatchColumns<'_>) -> Result<Self> {
        Ok(Self {
            map: MapColumns::new(cols, "mask")?,
            confidence: cols.optional("confidence")?,
        })
    }

    /// Row `row`'s label (`None` for a null row).
    pub(crate) fn get(&self, row: &Row<'_>) -> Result<Option<LabelRef<'_>>> {
        let Some((height, width, mask)) = self.map.get(row)? else {
            return Ok(None);
        };
        let i = row.i;
        let confidence = self
            .confidence
            .as_ref()
            .map(|c| c.as_binary::<i32>())
            .filter(|c| !c.is_null(i))
            .map(|c| c.value(i));
        Ok(Some(LabelRef::Segmentation {
            height,
            width,
            mask,
            confidence,
        }))
    }
}

/// Appends the `mask`, `mask_height` and `mask_width` columns to `cols`,
/// and `confidence` when `with_conf` is set (null where a map has none);
/// `mismatch(i)` is the error for a row `i` of another kind.
pub(crate) fn encode(
    labels: &[Option<Label>],
    with_conf: bool,
    cols: &mut Vec<ArrayRef>,
    mismatch: &dyn Fn(usize) -> Error,
) -> Result<()> {
    let n = labels.len();
    let bytes: usize = labels
        .iter()
        .flatten()
        .filter_map(SegMap::of)
        .map(|m| m.mask.len())
        .sum();
    let mut m = BinaryBuilder::with_capacity(n, bytes);
    let mut h = UInt32Builder::with_capacity(n);
    let mut w = UInt32Builder::with_capacity(n);
    let mut conf = BinaryBuilder::new();
    for (i, l) in labels.iter().enumerate() {
        match l.as_ref().map(SegMap::of) {
            None => {
                m.append_null();
                h.append_null();
                w.append_null();
                conf.append_null();
            }
            Some(Some(s)) => {
                m.append_value(&s.mask);
                h.append_value(s.height);
                w.append_value(s.width);
                conf.append_option(s.confidence.as_ref());
            }
            Some(None) => return Err(mismatch(i)),
        }
    }
    cols.push(Arc::new(m.finish()));
    cols.push(Arc::new(h.finish()));
    cols.push(Arc::new(w.finish()));
    if with_conf {
        cols.push(Arc::new(conf.finish()));
    }
    Ok(())
}
