//! Classification labels: [`ClassLabel`] (top-k or dense soft labels), their
//! value checks, and their Arrow columns (`classes` + `probs` lists for
//! top-k, a fixed-size `probs` list for dense).

use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt32Type};
use arrow_array::{Array, ArrayRef};

use super::shared::{all_probabilities, check_prob, kind_mismatch};
use super::{Label, LabelRef};
use crate::codec::arrow::{list_slice, BatchColumns, Row};
use crate::error::{Error, Result};
use crate::format::{ClassEncoding, TaskDef, TaskKind};

/// The kind's name, as [`TaskKind::name`] writes it.
pub(super) const NAME: &str = "classification";

/// A classification label.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassLabel {
    /// The k most likely classes, sorted by probability descending.
    TopK {
        /// Class ids.
        classes: Vec<u32>,
        /// Their probabilities.
        probs: Vec<f32>,
    },
    /// One probability per class.
    Dense(Vec<f32>),
}

impl ClassLabel {
    /// The top-k of a full probability vector, sorted descending (ties by class id).
    pub fn top_k(probs: &[f32], k: usize) -> Self {
        let mut idx: Vec<u32> = (0..probs.len() as u32).collect();
        idx.sort_by(|&a, &b| {
            probs[b as usize]
                .total_cmp(&probs[a as usize])
                .then(a.cmp(&b))
        });
        idx.truncate(k);
        let p = idx.iter().map(|&i| probs[i as usize]).collect();
        ClassLabel::TopK {
            classes: idx,
            probs: p,
        }
    }

    /// The label as a borrowed view.
    pub(super) fn view(&self) -> LabelRef<'_> {
        match self {
            ClassLabel::TopK { classes, probs } => LabelRef::TopK { classes, probs },
            ClassLabel::Dense(p) => LabelRef::Dense(p),
        }
    }

    /// An owned copy of a borrowed view: top-k when `classes` is set, dense otherwise.
    pub(super) fn from_view(classes: Option<&[u32]>, probs: &[f32]) -> Self {
        match classes {
            Some(classes) => ClassLabel::TopK {
                classes: classes.to_vec(),
                probs: probs.to_vec(),
            },
            None => ClassLabel::Dense(probs.to_vec()),
        }
    }

    /// The classification label in `label`, `None` for another kind.
    fn of(label: &Label) -> Option<&Self> {
        match label {
            Label::Classification(c) => Some(c),
            Label::Detection(_) | Label::Segmentation(_) | Label::Depth(_) => None,
        }
    }
}

/// Sum in f64 with independent accumulators (vectorizes, unlike a serial sum).
fn sum_f64(values: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = values.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v as f64;
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// Checks a classification label (top-k when `classes` is set, dense
/// otherwise) against `task`: the reason when a value is wrong.
pub(super) fn check(
    classes: Option<&[u32]>,
    probs: &[f32],
    task: &TaskDef,
) -> std::result::Result<(), String> {
    let (num_classes, encoding, multi_label) = match &task.kind {
        TaskKind::Classification {
            num_classes,
            encoding,
            multi_label,
            ..
        } => (*num_classes, *encoding, *multi_label),
        TaskKind::Detection { .. } | TaskKind::Segmentation { .. } | TaskKind::Depth { .. } => {
            return Err(kind_mismatch(NAME, task))
        }
    };
    match (classes, encoding) {
        (Some(classes), ClassEncoding::Topk) => {
            if classes.len() != probs.len() {
                return Err(format!(
                    "classes has {} entries but probs has {}",
                    classes.len(),
                    probs.len()
                ));
            }
            for (j, &c) in classes.iter().enumerate() {
                if c >= num_classes {
                    return Err(format!(
                        "class id {c} is not below num_classes {num_classes}"
                    ));
                }
                // k is small (top-5, top-20): a scan beats hashing.
                if classes[..j].contains(&c) {
                    return Err(format!("class id {c} appears twice"));
                }
            }
        }
        (None, ClassEncoding::Dense) => {
            if probs.len() != num_classes as usize {
                return Err(format!(
                    "probs has {} entries but num_classes is {num_classes}",
                    probs.len()
                ));
            }
        }
        (Some(_), ClassEncoding::Dense) | (None, ClassEncoding::Topk) => {
            return Err(format!(
                "label encoding does not match the task's {encoding:?} encoding"
            ))
        }
    }
    if !all_probabilities(probs) {
        for p in probs {
            check_prob(*p, "probability")?;
        }
    }
    if classes.is_some() && probs.windows(2).any(|w| w[0] < w[1]) {
        return Err("top-k probs are not sorted by probability descending".into());
    }
    let sum = sum_f64(probs);
    if !multi_label && sum > 1.0 + 1e-3 {
        return Err(format!(
            "probabilities sum to {sum:.4} > 1 in a single-label task"
        ));
    }
    Ok(())
}

/// The Arrow columns of a classification task in a record batch.
pub(crate) enum Columns {
    /// `classes` and `probs` lists.
    TopK(ArrayRef, ArrayRef),
    /// A fixed-size `probs` list.
    Dense(ArrayRef),
}

impl Columns {
    /// Finds and normalizes the columns of `encoding`.
    pub(crate) fn new(cols: &BatchColumns<'_>, encoding: ClassEncoding) -> Result<Self> {
        Ok(match encoding {
            ClassEncoding::Topk => {
                Columns::TopK(cols.required("classes")?, cols.required("probs")?)
            }
            ClassEncoding::Dense => Columns::Dense(cols.required("probs")?),
        })
    }

    /// Row `row`'s label (`None` for a null row).
    pub(crate) fn get(&self, row: &Row<'_>) -> Result<Option<LabelRef<'_>>> {
        let i = row.i;
        match self {
            Columns::TopK(c, p) => {
                let (c, p) = (c.as_list::<i32>(), p.as_list::<i32>());
                let inner = || row.error("null inside classes or probs");
                match (
                    list_slice::<UInt32Type>(c, i).map_err(|_| inner())?,
                    list_slice::<Float32Type>(p, i).map_err(|_| inner())?,
                ) {
                    (None, None) => Ok(None),
                    (Some(classes), Some(probs)) => Ok(Some(LabelRef::TopK { classes, probs })),
                    _ => Err(row.partly_null("one of classes and probs is null")),
                }
            }
            Columns::Dense(p) => {
                let p = p.as_fixed_size_list();
                if p.is_null(i) {
                    return Ok(None);
                }
                let n = p.value_length() as usize;
                let child = p.values().as_primitive::<Float32Type>();
                let (a, b) = (i * n, (i + 1) * n);
                if child.null_count() > 0 && (a..b).any(|k| child.is_null(k)) {
                    return Err(row.error("null inside probs"));
                }
                Ok(Some(LabelRef::Dense(&child.values()[a..b])))
            }
        }
    }
}

/// Appends the columns of a classification task with `encoding` and
/// `num_classes` to `cols`; `mismatch(i)` is the error for a row `i` whose
/// label does not fit (another kind or encoding, or a dense row of the
/// wrong length).
pub(crate) fn encode(
    labels: &[Option<Label>],
    encoding: ClassEncoding,
    num_classes: u32,
    cols: &mut Vec<ArrayRef>,
    mismatch: &dyn Fn(usize) -> Error,
) -> Result<()> {
    let n = labels.len();
    match encoding {
        ClassEncoding::Topk => {
            let k: usize = labels
                .iter()
                .flatten()
                .filter_map(ClassLabel::of)
                .map(|c| match c {
                    ClassLabel::TopK { classes, .. } => classes.len(),
                    ClassLabel::Dense(_) => 0,
                })
                .sum();
            let mut c = ListBuilder::with_capacity(UInt32Builder::with_capacity(k), n);
            let mut p = ListBuilder::with_capacity(Float32Builder::with_capacity(k), n);
            for (i, l) in labels.iter().enumerate() {
                match l.as_ref().map(ClassLabel::of) {
                    None => {
                        c.append_null();
                        p.append_null();
                    }
                    Some(Some(ClassLabel::TopK { classes, probs })) => {
                        c.values().append_slice(classes);
                        c.append(true);
                        p.values().append_slice(probs);
                        p.append(true);
                    }
                    Some(Some(ClassLabel::Dense(_)) | None) => return Err(mismatch(i)),
                }
            }
            cols.push(Arc::new(c.finish()));
            cols.push(Arc::new(p.finish()));
        }
        ClassEncoding::Dense => {
            let k = num_classes as usize;
            let mut p = FixedSizeListBuilder::with_capacity(
                Float32Builder::with_capacity(n * k),
                k as i32,
                n,
            );
            for (i, l) in labels.iter().enumerate() {
                match l.as_ref().map(ClassLabel::of) {
                    None => {
                        p.values().append_nulls(k);
                        p.append(false);
                    }
                    Some(Some(ClassLabel::Dense(probs))) if probs.len() == k => {
                        p.values().append_slice(probs);
                        p.append(true);
                    }
                    Some(Some(ClassLabel::Dense(_) | ClassLabel::TopK { .. }) | None) => {
                        return Err(mismatch(i))
                    }
                }
            }
            cols.push(Arc::new(p.finish()));
        }
    }
    Ok(())
}
