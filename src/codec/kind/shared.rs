//! Helpers the kind modules share: probability and map-size checks, the
//! kind-mismatch reason, and the Arrow columns of a map (segmentation mask
//! or depth) with its height and width.

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, ArrayRef, BinaryArray};

use crate::codec::arrow::{BatchColumns, Row};
use crate::error::Result;
use crate::format::TaskDef;

/// The reason given when a `label_kind` label is checked against `task` of
/// another kind.
pub(super) fn kind_mismatch(label_kind: &str, task: &TaskDef) -> String {
    format!(
        "a {} label given for task {:?} of kind {}",
        label_kind,
        task.name,
        task.kind.name()
    )
}

/// Checks that `p` is a finite probability; `what` names it in the reason.
pub(super) fn check_prob(p: f32, what: &str) -> std::result::Result<(), String> {
    if p.is_finite() && (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{what} {p} is not a finite probability in [0, 1]"))
    }
}

/// Whether every value is a finite number in [0, 1] (NaN fails both
/// comparisons). Branch-free so that it vectorizes.
pub(super) fn all_probabilities(values: &[f32]) -> bool {
    values
        .iter()
        .fold(true, |ok, &p| ok & (0.0..=1.0).contains(&p))
}

/// Checks that a map of `h × w` pixels of `elem` bytes each is `len` bytes
/// and not empty; `col` names the map in the reason.
pub(super) fn check_map_size(
    h: u32,
    w: u32,
    len: usize,
    elem: usize,
    col: &str,
) -> std::result::Result<(), String> {
    if h == 0 || w == 0 {
        return Err(format!("{col} has an empty size {h}x{w}"));
    }
    // In u128: h × w × elem can pass 2^64.
    let want = h as u128 * w as u128 * elem as u128;
    if len as u128 != want {
        return Err(format!(
            "{col} has {len} bytes but {h}x{w} with {elem} byte(s) per pixel needs {want}"
        ));
    }
    Ok(())
}

/// The Arrow columns of a map kind: the map's bytes (column `what`) and its
/// size (`{what}_height`, `{what}_width`).
pub(super) struct MapColumns {
    map: ArrayRef,
    h: ArrayRef,
    w: ArrayRef,
    what: &'static str,
}

impl MapColumns {
    /// Finds and normalizes the columns of map `what`.
    pub(super) fn new(cols: &BatchColumns<'_>, what: &'static str) -> Result<Self> {
        Ok(Self {
            map: cols.required(what)?,
            h: cols.required(&format!("{what}_height"))?,
            w: cols.required(&format!("{what}_width"))?,
            what,
        })
    }

    /// Row `row`'s height, width and map bytes (`None` for a null map); an
    /// error when the map is set but its size is not.
    pub(super) fn get(&self, row: &Row<'_>) -> Result<Option<(u32, u32, &[u8])>> {
        let (i, what) = (row.i, self.what);
        let map: &BinaryArray = self.map.as_binary::<i32>();
        if map.is_null(i) {
            return Ok(None);
        }
        let (h, w) = (
            self.h.as_primitive::<UInt32Type>(),
            self.w.as_primitive::<UInt32Type>(),
        );
        if h.is_null(i) || w.is_null(i) {
            return Err(row.partly_null(&format!(
                "{what} is set but {what}_height or {what}_width is null"
            )));
        }
        Ok(Some((h.value(i), w.value(i), map.value(i))))
    }
}
