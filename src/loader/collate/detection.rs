//! Detection: each sample's boxes moved through the geometry, clipped,
//! filtered by score and size, capped; then padded to the batch's N.

use super::{other_kind, BoxOut, Collator};
use crate::codec::{Geometry, LabelRef};
use crate::format::TaskDef;
use crate::loader::batch::TaskData;

/// The batch array, sized by [`finish`] once the batch's N is known.
pub(super) fn empty(prev: Option<TaskData>) -> TaskData {
    match prev {
        Some(d @ TaskData::Detection { .. }) => d,
        _ => TaskData::Detection {
            max_boxes: 0,
            boxes: vec![],
            classes: vec![],
            scores: vec![],
            valid: vec![],
        },
    }
}

/// A sample's boxes in output pixels, kept by the options.
pub(super) fn put(
    c: &Collator<'_>,
    t: &TaskDef,
    label: LabelRef<'_>,
    g: &Geometry,
) -> Result<Vec<BoxOut>, String> {
    let LabelRef::Detection {
        boxes,
        classes,
        scores,
    } = label
    else {
        return Err(other_kind(&label, t));
    };
    let mut out: Vec<BoxOut> = boxes
        .chunks_exact(4)
        .zip(classes)
        .zip(scores)
        .filter(|(_, &s)| s >= c.opts.min_score)
        .filter_map(|((b, &k), &s)| {
            g.map_box([b[0], b[1], b[2], b[3]], c.w, c.h, c.opts.min_box_size)
                .map(|b| (b, k as i64, s))
        })
        .collect();
    if let Some(cap) = c.opts.max_boxes {
        if out.len() > cap {
            out.sort_by(|a, b| b.2.total_cmp(&a.2));
            out.truncate(cap);
        }
    }
    Ok(out)
}

/// Lays out every sample's boxes at the batch's N (the cap, or the most
/// boxes of a sample), padding with class −1, score 0, not valid.
pub(super) fn finish(c: &Collator<'_>, data: &mut TaskData, prepared: Vec<Vec<BoxOut>>) {
    let TaskData::Detection {
        max_boxes,
        boxes,
        classes,
        scores,
        valid,
    } = data
    else {
        return;
    };
    let n = c
        .opts
        .max_boxes
        .unwrap_or_else(|| prepared.iter().map(Vec::len).max().unwrap_or(0));
    *max_boxes = n;
    boxes.clear();
    boxes.resize(c.b * n * 4, 0.0);
    classes.clear();
    classes.resize(c.b * n, -1);
    scores.clear();
    scores.resize(c.b * n, 0.0);
    valid.clear();
    valid.resize(c.b * n, false);
    for (i, p) in prepared.iter().enumerate() {
        for (j, (bx, k, s)) in p.iter().take(n).enumerate() {
            let at = i * n + j;
            boxes[4 * at..4 * at + 4].copy_from_slice(bx);
            classes[at] = *k;
            scores[at] = *s;
            valid[at] = true;
        }
    }
}
