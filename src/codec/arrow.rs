//! Typed labels ↔ Arrow record batches, reading columns by name and logical
//! type so that files from pyarrow or any other writer are accepted.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, FixedSizeListBuilder, Float32Builder, ListBuilder, UInt32Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt32Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::DataType;

use crate::codec::{ClassLabel, Label, LabelRef};
use crate::error::{Error, Location, Result};
use crate::format::{label_schema, logical_type_name, ClassEncoding, TaskDef, TaskKind};

/// Finds column `name`, checks that its logical type is `want`'s, and casts it
/// to exactly `want`. `Ok(None)` when it is absent and not `required`.
pub fn normalize_column(
    batch: &RecordBatch,
    name: &str,
    want: &DataType,
    loc: &Location,
    required: bool,
) -> Result<Option<ArrayRef>> {
    let Some(col) = batch.column_by_name(name) else {
        if required {
            return Err(Error::schema(
                loc.clone(),
                format!(
                    "missing column {name:?} (expected {})",
                    logical_type_name(want)
                ),
            ));
        }
        return Ok(None);
    };
    let (have, expect) = (logical_type_name(col.data_type()), logical_type_name(want));
    // Writers without Arrow's schema metadata (DuckDB, Spark) store a
    // fixed-size list as a plain list: accept it when every length fits.
    if have != expect && have != fixed_as_plain_list(&expect) {
        return Err(Error::schema(
            loc.clone(),
            format!("column {name:?} has type {have}, expected {expect}"),
        ));
    }
    if col.data_type() == want {
        return Ok(Some(col.clone()));
    }
    // Not `safe`: a list of the wrong length is an error, not a null.
    let options = arrow_cast::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow_cast::cast_with_options(col, want, &options)
        .map(Some)
        .map_err(|e| {
            Error::schema(
                loc.clone(),
                format!("column {name:?} cannot be read as {expect}: {e}"),
            )
        })
}

/// `List<FixedSizeList<Float32, 4>>` → `List<List<Float32>>`.
fn fixed_as_plain_list(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find("FixedSizeList<") {
        out.push_str(&rest[..i]);
        out.push_str("List<");
        rest = &rest[i + "FixedSizeList<".len()..];
        // Drop the ", n" that closes this list's element type.
        let mut depth = 0usize;
        let mut end = rest.len();
        for (j, ch) in rest.char_indices() {
            match ch {
                '<' => depth += 1,
                '>' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    end = j;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&fixed_as_plain_list(&rest[..end]));
        rest = rest[end..].trim_start_matches(|c: char| c == ',' || c == ' ' || c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

fn column(
    batch: &RecordBatch,
    task_schema: &arrow_schema::Schema,
    name: &str,
    loc: &Location,
    required: bool,
) -> Result<Option<ArrayRef>> {
    let want = task_schema
        .field_with_name(name)
        .map(|f| f.data_type().clone())
        .map_err(|e| Error::arrow(loc.file.clone(), e))?;
    normalize_column(batch, name, &want, loc, required)
}

/// Reads the `image_id` column: Utf8, no nulls.
pub(crate) fn image_ids(batch: &RecordBatch, loc: &Location) -> Result<StringArray> {
    let col =
        normalize_column(batch, "image_id", &DataType::Utf8, loc, true)?.expect("required column");
    let ids = col.as_string::<i32>().clone();
    if let Some(row) = (0..ids.len()).find(|&i| ids.is_null(i)) {
        return Err(Error::value(loc.at(row, None), "image_id is null"));
    }
    Ok(ids)
}

/// Decodes a label file's batch into image ids and labels (None for null
/// rows). Checks column types and row structure; values are checked by
/// [`Label::validate`]. `row_offset` is the batch's first row in the file.
pub fn batch_to_labels(
    task: &TaskDef,
    batch: &RecordBatch,
    loc: &Location,
    row_offset: usize,
) -> Result<(Vec<String>, Vec<Option<Label>>)> {
    let cols = LabelColumns::new(task, batch, loc, row_offset)?;
    let ids: Vec<String> = (0..cols.len())
        .map(|i| cols.image_id(i).to_owned())
        .collect();
    let labels = (0..cols.len())
        .map(|i| Ok(cols.get(i)?.map(|l| l.to_label())))
        .collect::<Result<Vec<_>>>()?;
    Ok((ids, labels))
}

/// The label columns of one task in a record batch, normalized once, read
/// row by row as borrowed [`LabelRef`]s (no map is copied).
pub struct LabelColumns {
    ids: StringArray,
    loc: Location,
    row_offset: usize,
    cols: Cols,
}

enum Cols {
    TopK(ArrayRef, ArrayRef),
    Dense(ArrayRef),
    Detection(ArrayRef, ArrayRef, ArrayRef),
    Map {
        map: ArrayRef,
        h: ArrayRef,
        w: ArrayRef,
        conf: Option<ArrayRef>,
        what: &'static str,
    },
}

/// The values of list row `i` as a slice of its child (`None` for a null
/// row); an error when the child has nulls in that range.
fn list_slice<T: arrow_array::ArrowPrimitiveType>(
    list: &arrow_array::ListArray,
    i: usize,
) -> std::result::Result<Option<&[T::Native]>, ()> {
    if list.is_null(i) {
        return Ok(None);
    }
    let off = list.value_offsets();
    let (a, b) = (off[i] as usize, off[i + 1] as usize);
    let child = list.values().as_primitive::<T>();
    if child.null_count() > 0 && (a..b).any(|k| child.is_null(k)) {
        return Err(());
    }
    Ok(Some(&child.values()[a..b]))
}

impl LabelColumns {
    /// Finds and normalizes `task`'s columns in `batch` (types checked;
    /// `confidence` read when present). `row_offset` is the batch's first
    /// row in the file, for error locations.
    pub fn new(
        task: &TaskDef,
        batch: &RecordBatch,
        loc: &Location,
        row_offset: usize,
    ) -> Result<Self> {
        let schema = label_schema(task, true);
        let ids = image_ids(batch, loc)?;
        let req = |name: &str| -> Result<ArrayRef> {
            Ok(column(batch, &schema, name, loc, true)?.expect("required column"))
        };
        let cols = match &task.kind {
            TaskKind::Classification {
                encoding: ClassEncoding::Topk,
                ..
            } => Cols::TopK(req("classes")?, req("probs")?),
            TaskKind::Classification {
                encoding: ClassEncoding::Dense,
                ..
            } => Cols::Dense(req("probs")?),
            TaskKind::Detection { .. } => {
                Cols::Detection(req("boxes")?, req("classes")?, req("scores")?)
            }
            TaskKind::Segmentation { .. } => Cols::Map {
                map: req("mask")?,
                h: req("mask_height")?,
                w: req("mask_width")?,
                conf: column(batch, &schema, "confidence", loc, false)?,
                what: "mask",
            },
            TaskKind::Depth { .. } => Cols::Map {
                map: req("depth")?,
                h: req("depth_height")?,
                w: req("depth_width")?,
                conf: None,
                what: "depth",
            },
        };
        Ok(Self {
            ids,
            loc: loc.clone(),
            row_offset,
            cols,
        })
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The image id of row `i`.
    pub fn image_id(&self, i: usize) -> &str {
        self.ids.value(i)
    }

    /// Where row `i` is, for errors.
    pub fn location(&self, i: usize) -> Location {
        self.loc.at(self.row_offset + i, Some(self.ids.value(i)))
    }

    /// Row `i`'s label (`None` for a null row); an error for a partly null
    /// row. Values are not checked here: see [`LabelRef::check`].
    pub fn get(&self, i: usize) -> Result<Option<LabelRef<'_>>> {
        let at = || self.location(i);
        let partial = |what: &str| Error::value(at(), format!("row is partly null: {what}"));
        match &self.cols {
            Cols::TopK(c, p) => {
                let (c, p) = (c.as_list::<i32>(), p.as_list::<i32>());
                let inner = || Error::value(at(), "null inside classes or probs");
                match (
                    list_slice::<UInt32Type>(c, i).map_err(|_| inner())?,
                    list_slice::<Float32Type>(p, i).map_err(|_| inner())?,
                ) {
                    (None, None) => Ok(None),
                    (Some(classes), Some(probs)) => Ok(Some(LabelRef::TopK { classes, probs })),
                    _ => Err(partial("one of classes and probs is null")),
                }
            }
            Cols::Dense(p) => {
                let p = p.as_fixed_size_list();
                if p.is_null(i) {
                    return Ok(None);
                }
                let n = p.value_length() as usize;
                let child = p.values().as_primitive::<Float32Type>();
                let (a, b) = (i * n, (i + 1) * n);
                if child.null_count() > 0 && (a..b).any(|k| child.is_null(k)) {
                    return Err(Error::value(at(), "null inside probs"));
                }
                Ok(Some(LabelRef::Dense(&child.values()[a..b])))
            }
            Cols::Detection(boxes, classes, scores) => {
                let (bx, c, s) = (
                    boxes.as_list::<i32>(),
                    classes.as_list::<i32>(),
                    scores.as_list::<i32>(),
                );
                let nulls = [bx.is_null(i), c.is_null(i), s.is_null(i)];
                if nulls.iter().all(|x| *x) {
                    return Ok(None);
                }
                if nulls.iter().any(|x| *x) {
                    return Err(partial("some of boxes, classes and scores are null"));
                }
                let inner = || Error::value(at(), "null inside boxes, classes or scores");
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
            Cols::Map {
                map,
                h,
                w,
                conf,
                what,
            } => {
                let map = map.as_binary::<i32>();
                if map.is_null(i) {
                    return Ok(None);
                }
                let (h, w) = (
                    h.as_primitive::<UInt32Type>(),
                    w.as_primitive::<UInt32Type>(),
                );
                if h.is_null(i) || w.is_null(i) {
                    return Err(partial(&format!(
                        "{what} is set but {what}_height or {what}_width is null"
                    )));
                }
                let (height, width) = (h.value(i), w.value(i));
                Ok(Some(if *what == "depth" {
                    LabelRef::Depth {
                        height,
                        width,
                        depth: map.value(i),
                    }
                } else {
                    let confidence = conf
                        .as_ref()
                        .map(|c| c.as_binary::<i32>())
                        .filter(|c| !c.is_null(i))
                        .map(|c| c.value(i));
                    LabelRef::Segmentation {
                        height,
                        width,
                        mask: map.value(i),
                        confidence,
                    }
                }))
            }
        }
    }
}

/// Builds a label file's record batch from image ids and (validated)
/// labels. Segmentation batches carry a `confidence` column when
/// `with_conf` is set (null where a map has none).
pub fn labels_to_batch(
    task: &TaskDef,
    ids: &[String],
    labels: &[Option<Label>],
    with_conf: bool,
) -> Result<RecordBatch> {
    let schema = Arc::new(label_schema(task, with_conf));
    let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(ids))];
    let n = labels.len();
    let mismatch = |i: usize| {
        Error::value(
            Location::file("label writer").at(i, ids.get(i).map(|s| s.as_str())),
            format!("label kind does not match task {:?}", task.name),
        )
    };
    match &task.kind {
        TaskKind::Classification {
            encoding: ClassEncoding::Topk,
            ..
        } => {
            let k: usize = labels
                .iter()
                .map(|l| match l {
                    Some(Label::Classification(ClassLabel::TopK { classes, .. })) => classes.len(),
                    _ => 0,
                })
                .sum();
            let mut c = ListBuilder::with_capacity(UInt32Builder::with_capacity(k), n);
            let mut p = ListBuilder::with_capacity(Float32Builder::with_capacity(k), n);
            for (i, l) in labels.iter().enumerate() {
                match l {
                    None => {
                        c.append_null();
                        p.append_null();
                    }
                    Some(Label::Classification(ClassLabel::TopK { classes, probs })) => {
                        c.values().append_slice(classes);
                        c.append(true);
                        p.values().append_slice(probs);
                        p.append(true);
                    }
                    _ => return Err(mismatch(i)),
                }
            }
            cols.push(Arc::new(c.finish()));
            cols.push(Arc::new(p.finish()));
        }
        TaskKind::Classification {
            encoding: ClassEncoding::Dense,
            num_classes,
            ..
        } => {
            let k = *num_classes as usize;
            let mut p = FixedSizeListBuilder::with_capacity(
                Float32Builder::with_capacity(n * k),
                k as i32,
                n,
            );
            for (i, l) in labels.iter().enumerate() {
                match l {
                    None => {
                        p.values().append_nulls(k);
                        p.append(false);
                    }
                    Some(Label::Classification(ClassLabel::Dense(probs))) if probs.len() == k => {
                        p.values().append_slice(probs);
                        p.append(true);
                    }
                    _ => return Err(mismatch(i)),
                }
            }
            cols.push(Arc::new(p.finish()));
        }
        TaskKind::Detection { .. } => {
            let k: usize = labels
                .iter()
                .map(|l| match l {
                    Some(Label::Detection(d)) => d.boxes.len(),
                    _ => 0,
                })
                .sum();
            let boxes =
                FixedSizeListBuilder::with_capacity(Float32Builder::with_capacity(4 * k), 4, k);
            let mut b = ListBuilder::with_capacity(boxes, n);
            let mut c = ListBuilder::with_capacity(UInt32Builder::with_capacity(k), n);
            let mut s = ListBuilder::with_capacity(Float32Builder::with_capacity(k), n);
            for (i, l) in labels.iter().enumerate() {
                match l {
                    None => {
                        b.append_null();
                        c.append_null();
                        s.append_null();
                    }
                    Some(Label::Detection(d)) => {
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
                    _ => return Err(mismatch(i)),
                }
            }
            cols.push(Arc::new(b.finish()));
            cols.push(Arc::new(c.finish()));
            cols.push(Arc::new(s.finish()));
        }
        TaskKind::Segmentation { .. } => {
            let bytes: usize = labels
                .iter()
                .map(|l| match l {
                    Some(Label::Segmentation(m)) => m.mask.len(),
                    _ => 0,
                })
                .sum();
            let mut m = BinaryBuilder::with_capacity(n, bytes);
            let mut h = UInt32Builder::with_capacity(n);
            let mut w = UInt32Builder::with_capacity(n);
            let mut conf = BinaryBuilder::new();
            for (i, l) in labels.iter().enumerate() {
                match l {
                    None => {
                        m.append_null();
                        h.append_null();
                        w.append_null();
                        conf.append_null();
                    }
                    Some(Label::Segmentation(s)) => {
                        m.append_value(&s.mask);
                        h.append_value(s.height);
                        w.append_value(s.width);
                        conf.append_option(s.confidence.as_ref());
                    }
                    _ => return Err(mismatch(i)),
                }
            }
            cols.push(Arc::new(m.finish()));
            cols.push(Arc::new(h.finish()));
            cols.push(Arc::new(w.finish()));
            if with_conf {
                cols.push(Arc::new(conf.finish()));
            }
        }
        TaskKind::Depth { .. } => {
            let bytes: usize = labels
                .iter()
                .map(|l| match l {
                    Some(Label::Depth(d)) => d.depth.len(),
                    _ => 0,
                })
                .sum();
            let mut d = BinaryBuilder::with_capacity(n, bytes);
            let mut h = UInt32Builder::with_capacity(n);
            let mut w = UInt32Builder::with_capacity(n);
            for (i, l) in labels.iter().enumerate() {
                match l {
                    None => {
                        d.append_null();
                        h.append_null();
                        w.append_null();
                    }
                    Some(Label::Depth(x)) => {
                        d.append_value(&x.depth);
                        h.append_value(x.height);
                        w.append_value(x.width);
                    }
                    _ => return Err(mismatch(i)),
                }
            }
            cols.push(Arc::new(d.finish()));
            cols.push(Arc::new(h.finish()));
            cols.push(Arc::new(w.finish()));
        }
    }
    RecordBatch::try_new(schema, cols).map_err(|e| Error::arrow("label writer", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{ListBuilder, UInt32Builder};

    #[test]
    fn fixed_size_lists_map_to_plain_lists() {
        assert_eq!(
            fixed_as_plain_list("List<FixedSizeList<Float32, 4>>"),
            "List<List<Float32>>"
        );
        assert_eq!(
            fixed_as_plain_list("FixedSizeList<Float32, 1000>"),
            "List<Float32>"
        );
        assert_eq!(fixed_as_plain_list("List<UInt32>"), "List<UInt32>");
    }

    fn detection_batch(box_len: usize) -> RecordBatch {
        // Boxes as a plain List<List<Float32>>, as DuckDB or Spark write them.
        let mut b = ListBuilder::new(ListBuilder::new(Float32Builder::new()));
        let mut c = ListBuilder::new(UInt32Builder::new());
        let mut s = ListBuilder::new(Float32Builder::new());
        for _ in 0..2 {
            b.values()
                .values()
                .append_slice(&[1.0, 2.0, 3.0, 4.0][..box_len]);
            b.values().append(true);
            b.append(true);
            c.values().append_value(1);
            c.append(true);
            s.values().append_value(0.5);
            s.append(true);
        }
        let ids = StringArray::from(vec!["a", "b"]);
        RecordBatch::try_from_iter(vec![
            ("image_id", Arc::new(ids) as ArrayRef),
            ("boxes", Arc::new(b.finish()) as ArrayRef),
            ("classes", Arc::new(c.finish()) as ArrayRef),
            ("scores", Arc::new(s.finish()) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn plain_list_boxes_are_read_when_lengths_fit() {
        let task =
            TaskDef::from_json(r#"{"name":"d","kind":"detection","num_classes":2}"#).unwrap();
        let loc = Location::file("duck.parquet");
        let (ids, labels) = batch_to_labels(&task, &detection_batch(4), &loc, 0).unwrap();
        assert_eq!(ids, ["a", "b"]);
        match &labels[1] {
            Some(Label::Detection(d)) => assert_eq!(d.boxes, vec![[1.0, 2.0, 3.0, 4.0]]),
            other => panic!("{other:?}"),
        }
        let err = batch_to_labels(&task, &detection_batch(3), &loc, 0).unwrap_err();
        assert!(
            matches!(&err, Error::Schema { .. }) && err.to_string().contains("boxes"),
            "{err}"
        );
    }
}
