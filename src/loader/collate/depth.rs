//! Depth: B×1×H'×W' float16 sampled at the nearest map pixel; NaN where
//! the map has no value or the output falls outside the image.

use std::ops::Range;

use super::{other_kind, resample, Collator};
use crate::codec::{Geometry, LabelRef};
use crate::format::TaskDef;
use crate::loader::batch::TaskData;

/// The NaN a depth map holds where it has no value.
const DEPTH_NAN: half::f16 = half::f16::NAN;

/// The batch array of `len` values (reusing `prev`'s buffer when it is one).
pub(super) fn empty(len: usize, prev: Option<TaskData>) -> TaskData {
    let mut depth = match prev {
        Some(TaskData::Depth { depth }) => depth,
        _ => Vec::new(),
    };
    depth.resize(len, DEPTH_NAN);
    TaskData::Depth { depth }
}

/// A slot's values: all NaN.
pub(super) fn clear(depth: &mut [half::f16], slot: Range<usize>) {
    depth[slot].fill(DEPTH_NAN)
}

/// Writes sample `i`'s depth through the label grid's geometry `gl`.
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
        TaskData::Depth { depth },
        LabelRef::Depth {
            height,
            width,
            depth: src,
        },
    ) = (data, label)
    else {
        return Err(other_kind(&label, t));
    };
    let (lw, lh) = c.label_size();
    let lhw = (lw * lh) as usize;
    let mw = width as usize;
    let geo = (gl, image, (width, height), (lw, lh));
    resample(
        &mut depth[i * lhw..(i + 1) * lhw],
        geo,
        DEPTH_NAN,
        |ry, x| {
            let p = 2 * (ry * mw + x);
            half::f16::from_bits(u16::from_le_bytes([src[p], src[p + 1]]))
        },
    );
    Ok(())
}
