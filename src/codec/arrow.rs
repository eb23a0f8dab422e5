//! Typed labels ↔ Arrow record batches, reading columns by name and logical
//! type so that files from pyarrow or any other writer are accepted. What is
//! kind-independent lives here (column normalization, image ids, row errors);
//! each kind's columns are read and built by its module in `kind/`, which
//! [`LabelColumns`] and [`labels_to_batch`] dispatch to.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Schema};

use super::kind::{classification, depth, detection, segmentation};
use crate::codec::{Label, LabelRef};
use crate::error::{Error, Location, Result};
use crate::format::{label_schema, logical_type_name, TaskDef, TaskKind};

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

/// The columns of a record batch, read by name and normalized to the types
/// of a task's label schema: what the kinds' decoders find their columns in.
pub(super) struct BatchColumns<'a> {
    batch: &'a RecordBatch,
    schema: Schema,
    loc: &'a Location,
}

impl BatchColumns<'_> {
    /// Column `name`; an error when it is absent or of another type.
    pub(super) fn required(&self, name: &str) -> Result<ArrayRef> {
        Ok(self.column(name, true)?.expect("required column"))
    }

    /// Column `name` when present; an error when it is of another type.
    pub(super) fn optional(&self, name: &str) -> Result<Option<ArrayRef>> {
        self.column(name, false)
    }

    fn column(&self, name: &str, required: bool) -> Result<Option<ArrayRef>> {
        let want = self
            .schema
            .field_with_name(name)
            .map(|f| f.data_type().clone())
            .map_err(|e| Error::arrow(self.loc.file.clone(), e))?;
        normalize_column(self.batch, name, &want, self.loc, required)
    }
}

/// The values of list row `i` as a slice of its child (`None` for a null
/// row); an error when the child has nulls in that range.
pub(super) fn list_slice<T: arrow_array::ArrowPrimitiveType>(
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

/// The label columns of one task in a record batch, normalized once, read
/// row by row as borrowed [`LabelRef`]s (no map is copied).
pub struct LabelColumns {
    ids: StringArray,
    loc: Location,
    row_offset: usize,
    cols: Cols,
}

/// The kind-specific columns: one variant per kind.
enum Cols {
    Classification(classification::Columns),
    Detection(detection::Columns),
    Segmentation(segmentation::Columns),
    Depth(depth::Columns),
}

/// Row `i` of a [`LabelColumns`], for the errors of the kinds' decoders.
pub(super) struct Row<'a> {
    /// The row in the batch.
    pub(super) i: usize,
    columns: &'a LabelColumns,
}

impl Row<'_> {
    /// A value error at this row.
    pub(super) fn error(&self, reason: impl Into<String>) -> Error {
        Error::value(self.columns.location(self.i), reason)
    }

    /// The error for a row that is partly null; `what` says which part.
    pub(super) fn partly_null(&self, what: &str) -> Error {
        self.error(format!("row is partly null: {what}"))
    }
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
        let found = BatchColumns { batch, schema, loc };
        let cols = match &task.kind {
            TaskKind::Classification { encoding, .. } => {
                Cols::Classification(classification::Columns::new(&found, *encoding)?)
            }
            TaskKind::Detection { .. } => Cols::Detection(detection::Columns::new(&found)?),
            TaskKind::Segmentation { .. } => {
                Cols::Segmentation(segmentation::Columns::new(&found)?)
            }
            TaskKind::Depth { .. } => Cols::Depth(depth::Columns::new(&found)?),
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
        let row = Row { i, columns: self };
        match &self.cols {
            Cols::Classification(c) => c.get(&row),
            Cols::Detection(c) => c.get(&row),
            Cols::Segmentation(c) => c.get(&row),
            Cols::Depth(c) => c.get(&row),
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
    let mismatch = |i: usize| {
        Error::value(
            Location::file("label writer").at(i, ids.get(i).map(|s| s.as_str())),
            format!("label kind does not match task {:?}", task.name),
        )
    };
    match &task.kind {
        TaskKind::Classification {
            encoding,
            num_classes,
            ..
        } => classification::encode(labels, *encoding, *num_classes, &mut cols, &mismatch)?,
        TaskKind::Detection { .. } => detection::encode(labels, &mut cols, &mismatch)?,
        TaskKind::Segmentation { .. } => {
            segmentation::encode(labels, with_conf, &mut cols, &mismatch)?
        }
        TaskKind::Depth { .. } => depth::encode(labels, &mut cols, &mismatch)?,
    }
    RecordBatch::try_new(schema, cols).map_err(|e| Error::arrow("label writer", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{Float32Builder, ListBuilder, UInt32Builder};

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
