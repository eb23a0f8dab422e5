//! Classification in a picture: the three most probable classes, written
//! in the caption (no panel).

use super::name;
use crate::codec::ClassLabel;
use crate::format::TaskDef;

/// The caption part of `task`'s label `c`: its three most probable classes.
pub(super) fn caption(task: &TaskDef, c: &ClassLabel) -> String {
    let pairs: Vec<(u32, f32)> = match c {
        ClassLabel::TopK { classes, probs } => classes
            .iter()
            .copied()
            .zip(probs.iter().copied())
            .take(3)
            .collect(),
        ClassLabel::Dense(p) => {
            let mut v: Vec<(u32, f32)> =
                p.iter().enumerate().map(|(i, p)| (i as u32, *p)).collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1));
            v.truncate(3);
            v
        }
    };
    let s: Vec<String> = pairs
        .iter()
        .map(|(c, p)| format!("{} {:.2}", name(task, *c), p))
        .collect();
    format!("{}: {}", task.name, s.join(", "))
}
