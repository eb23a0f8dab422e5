//! Classification: B×C probabilities; a top-k label's missing mass is
//! spread, renormalized or left out as the options say.

use super::{other_kind, Collator};
use crate::codec::LabelRef;
use crate::format::TaskDef;
use crate::loader::batch::{MissingMass, TaskData};

/// The batch array (reusing `prev`'s buffer when it is one).
pub(super) fn empty(num_classes: usize, b: usize, prev: Option<TaskData>) -> TaskData {
    let mut probs = match prev {
        Some(TaskData::Classification { probs, .. }) => probs,
        _ => Vec::new(),
    };
    probs.clear();
    probs.resize(b * num_classes, 0.0);
    TaskData::Classification { num_classes, probs }
}

/// Slot `i`: all zeros.
pub(super) fn clear(probs: &mut [f32], num_classes: usize, i: usize) {
    probs[i * num_classes..(i + 1) * num_classes].fill(0.0)
}

/// Writes sample `i`'s probabilities.
pub(super) fn put(
    c: &Collator<'_>,
    data: &mut TaskData,
    t: &TaskDef,
    i: usize,
    label: LabelRef<'_>,
    multi_label: bool,
) -> Result<(), String> {
    let TaskData::Classification { num_classes, probs } = data else {
        return Err(other_kind(&label, t));
    };
    let row = &mut probs[i * *num_classes..(i + 1) * *num_classes];
    match label {
        LabelRef::TopK { classes, probs: p } => {
            for (&c, &p) in classes.iter().zip(p) {
                row[c as usize] = p;
            }
            let sum: f32 = p.iter().sum();
            match c.opts.missing_mass {
                MissingMass::Spread if !multi_label => {
                    let others = row.len().saturating_sub(classes.len());
                    if others > 0 && sum < 1.0 {
                        let add = (1.0 - sum) / others as f32;
                        for (k, v) in row.iter_mut().enumerate() {
                            if !classes.contains(&(k as u32)) {
                                *v = add;
                            }
                        }
                    }
                }
                MissingMass::Renormalize if !multi_label && sum > 0.0 => {
                    row.iter_mut().for_each(|v| *v /= sum);
                }
                MissingMass::Spread | MissingMass::Renormalize | MissingMass::Ignore => {}
            }
            Ok(())
        }
        LabelRef::Dense(p) => {
            row.copy_from_slice(p);
            Ok(())
        }
        other => Err(other_kind(&other, t)),
    }
}
