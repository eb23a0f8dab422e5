//! Segmentation: B×H'×W' class ids in the task's dtype, sampled at the
//! nearest map pixel; `ignore_index` outside the image or under the
//! confidence threshold.

use std::ops::Range;

use super::{other_kind, resample, Collator};
use crate::codec::{Geometry, LabelRef};
use crate::format::{MaskDtype, TaskDef};
use crate::loader::batch::{Mask, TaskData};

/// The batch array of `len` values (reusing `prev`'s buffer when it is one
/// of the same dtype).
pub(super) fn empty(
    ignore_index: u32,
    dtype: MaskDtype,
    len: usize,
    prev: Option<TaskData>,
) -> TaskData {
    let prev = match prev {
        Some(TaskData::Segmentation { mask, .. }) => Some(mask),
        _ => None,
    };
    let ig = ignore_index;
    let mask = match (dtype, prev) {
        // Reused buffers keep stale values: every slot is written or
        // cleared (`clear_task`) before the batch leaves.
        (MaskDtype::U8, Some(Mask::U8(mut v))) => {
            v.resize(len, ig as u8);
            Mask::U8(v)
        }
        (MaskDtype::U16, Some(Mask::U16(mut v))) => {
            v.resize(len, ig as u16);
            Mask::U16(v)
        }
        (MaskDtype::U8, _) => Mask::U8(vec![ig as u8; len]),
        (MaskDtype::U16, _) => Mask::U16(vec![ig as u16; len]),
    };
    TaskData::Segmentation {
        mask,
        ignore_index: ig,
    }
}

/// A slot's values: all `ignore_index`.
pub(super) fn clear(mask: &mut Mask, ignore_index: u32, slot: Range<usize>) {
    match mask {
        Mask::U8(v) => v[slot].fill(ignore_index as u8),
        Mask::U16(v) => v[slot].fill(ignore_index as u16),
    }
}

/// Writes sample `i`'s mask through the label grid's geometry `gl`.
pub(super) fn put(
    c: &Collator<'_>,
    data: &mut TaskData,
    t: &TaskDef,
    i: usize,
    label: LabelRef<'_>,
    gl: &Geometry,
    image: (u32, u32),
) -> Result<(), String> {
    let (
        TaskData::Segmentation { mask, ignore_index },
        LabelRef::Segmentation {
            height,
            width,
            mask: src,
            confidence,
        },
    ) = (data, label)
    else {
        return Err(other_kind(&label, t));
    };
    let (lw, lh) = c.label_size();
    let lhw = (lw * lh) as usize;
    let thr = (c.opts.min_confidence.clamp(0.0, 1.0) * 255.0).round() as u8;
    let conf = confidence.filter(|_| thr > 0);
    let mw = width as usize;
    let geo = (gl, image, (width, height), (lw, lh));
    match mask {
        Mask::U8(out) => {
            let ig = *ignore_index as u8;
            resample(&mut out[i * lhw..(i + 1) * lhw], geo, ig, |ry, x| {
                let p = ry * mw + x;
                match conf {
                    Some(c) if c[p] < thr => ig,
                    _ => src[p],
                }
            })
        }
        Mask::U16(out) => {
            let ig = *ignore_index as u16;
            resample(&mut out[i * lhw..(i + 1) * lhw], geo, ig, |ry, x| {
                let p = ry * mw + x;
                match conf {
                    Some(c) if c[p] < thr => ig,
                    _ => u16::from_le_bytes([src[2 * p], src[2 * p + 1]]),
                }
            })
        }
    }
    Ok(())
}
