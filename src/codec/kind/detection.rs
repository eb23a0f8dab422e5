//! Detection labels: [`Detections`] (boxes, classes and scores of one
//! image), their value checks, and their Arrow columns (`boxes` as a list of
//! 4-float lists, `classes` and `scores` lists).

use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt32Type};
use arrow_array::{Array, ArrayRef};

use super::shared::{all_probabilities, check_prob, kind_mismatch};
use super::{Label, LabelRef};
use crate::codec::arrow::{list_slice, BatchColumns, Row};
use crate::error::{Error, Result};
use crate::format::{TaskDef, TaskKind};

/// The kind's name, as [`TaskKind::name`] writes it.
pub(super) const NAME: &str = "detection";

/// Detections of one image, in pixels of the stored image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detections {
    /// `[x0, y0, x1, y1]` per box.
    pub boxes: Vec<[f32; 4]>,
    /// Class id per box.
    pub classes: Vec<u32>,
    /// Score per box (1.0 for ground truth).
    pub scores: Vec<f32>,
}

impl Detections {
    /// The label as a borrowed view.
    pub(super) fn view(&self) -> LabelRef<'_> {
        LabelRef::Detection {
            boxes: self.boxes.as_flattened(),
            classes: &self.classes,
            scores: &self.scores,
        }
    }

    /// An owned copy of a borrowed view (`boxes` flat, 4 values a box).
    pub(super) fn from_view(boxes: &[f32], classes: &[u32], scores: &[f32]) -> Self {
        Detections {
            boxes: boxes
                .chunks_exact(4)
                .map(|q| [q[0], q[1], q[2], q[3]])
                .collect(),
            classes: classes.to_vec(),
            scores: scores.to_vec(),
        }
    }

    /// The detections in `label`, `None` for another kind.
    fn of(label: &Label) -> Option<&Self> {
        match label {
            Label::Detection(d) => Some(d),
            Label::Classification(_) | Label::Segmentation(_) | Label::Depth(_) => None,
        }
    }
}

/// Checks detections (`boxes` flat, 4 values a box) against `task`: the
/// reason when a value is wrong.
pub(super) fn check(
    boxes: &[f32],
    classes: &[u32],
    scores: &[f32],
    task: &TaskDef,
) -> std::result::Result<(), String> {
    let num_classes = match &task.kind {
        TaskKind::Detection { num_classes, .. } => *num_classes,
        TaskKind::Classification { .. }
        | TaskKind::Segmentation { .. }
        | TaskKind::Depth { .. } => return Err(kind_mismatch(NAME, task)),
    };
    let n = boxes.len() / 4;
    if !boxes.len().is_multiple_of(4) || classes.len() != n || scores.len() != n {
        return Err(format!(
            "boxes, classes and scores have {}, {} and {} entries",
            boxes.len() as f64 / 4.0,
            classes.len(),
            scores.len()
        ));
    }
    for (i, b) in boxes.chunks_exact(4).enumerate() {
        if b.iter().any(|v| !v.is_finite()) {
            return Err(format!("box {i} {b:?} is not finite"));
        }
        if b[0] > b[2] || b[1] > b[3] {
            return Err(format!("box {i} {b:?} has x0 > x1 or y0 > y1"));
        }
    }
    for (i, &c) in classes.iter().enumerate() {
        if c >= num_classes {
            return Err(format!(
                "box {i} has class id {c}, not below num_classes {num_classes}"
            ));
        }
    }
    if !all_probabilities(scores) {
        for s in scores {
            check_prob(*s, "score")?;
        }
    }
    Ok(())
}

/// The Arrow columns of a detection task in a record batch.
pub(crate) struct Columns {
    boxes: ArrayRef,
    classes: ArrayRef,
    scores: ArrayRef,
}

impl Columns {
    /// Finds and normalizes `boxes`, `classes` and `scores`.
    pub(crate) fn new(cols: &BatchColumns<'_>) -> Result<Self> {
        Ok(Self {
            boxes: cols.required("boxes")?,
            classes: cols.required("classes")?,
            scores: cols.required("scores")?,
        })
    }

    /// Row `row`'s label (`None` for a null row).
    pub(crate) fn get(&self, row: &Row<'_>) -> Result<Option<LabelRef<'_>>> {
        let i = row.i;
        let (bx, c, s) = (
            self.boxes.as_list::<i32>(),
            self.classes.as_list::<i32>(),
            self.scores.as_list::<i32>(),
        );
        let nulls = [bx.is_null(i), c.is_null(i), s.is_null(i)];
        if nulls.iter().all(|x| *x) {
            return Ok(None);
        }
        if nulls.iter().any(|x| *x) {
            return Err(row.partly_null("some of boxes, classes and scores are null"));
        }
        let inner = || row.error("null inside boxes, classes or scores");
        let off = bx.value_offsets();
        let (a, b) = (off[i] as usize, off[i + 1] as usize);
        let fsl = bx.values().as_fixed_size_list();
        let flat = fsl.values().as_primitive::<Float32Type>();
        if (fsl.null_count() > 0 && (a..b).any(|k| fsl.is_null(k)))
            || (flat.null_count() > 0 && (4 * a..4 * b).any(|k| flat.is_null(k)))
        {
            return Err(inner());
        }
        let classes = list_slice::<UInt32Type>(c, i)
            .map_err(|_| inner())?
            .unwrap_or_default();
        let scores = list_slice::<Float32Type>(s, i)
            .map_err(|_| inner())?
            .unwrap_or_default();
        Ok(Some(LabelRef::Detection {
            boxes: &flat.values()[4 * a..4 * b],
            classes,
            scores,
        }))
    }
}

/// Appends the `boxes`, `classes` and `scores` columns to `cols`;
/// `mismatch(i)` is the error for a row `i` of another kind.
pub(crate) fn encode(
    labels: &[Option<Label>],
    cols: &mut Vec<ArrayRef>,
    mismatch: &dyn Fn(usize) -> Error,
) -> Result<()> {
    let n = labels.len();
    let k: usize = labels
        .iter()
        .flatten()
        .filter_map(Detections::of)
        .map(|d| d.boxes.len())
        .sum();
    let boxes = FixedSizeListBuilder::with_capacity(Float32Builder::with_capacity(4 * k), 4, k);
    let mut b = ListBuilder::with_capacity(boxes, n);
    let mut c = ListBuilder::with_capacity(UInt32Builder::with_capacity(k), n);
    let mut s = ListBuilder::with_capacity(Float32Builder::with_capacity(k), n);
    for (i, l) in labels.iter().enumerate() {
        match l.as_ref().map(Detections::of) {
            None => {
                b.append_null();
                c.append_null();
                s.append_null();
            }
            Some(Some(d)) => {
                for bx in &d.boxes {
                    b.values().values().append_slice(bx);
                    b.values().append(true);
                }
                b.append(true);
                c.values().append_slice(&d.classes);
                c.append(true);
                s.values().append_slice(&d.scores);
                s.append(true);
            }
            Some(None) => return Err(mismatch(i)),
        }
    }
    cols.push(Arc::new(b.finish()));
    cols.push(Arc::new(c.finish()));
    cols.push(Arc::new(s.finish()));
    Ok(())
}
