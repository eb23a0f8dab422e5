//! Arrow schemas of image shards and label files (FORMAT.md sections 3 and 4),
//! and the logical-type comparison used to accept files from other writers.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

use crate::error::{Error, Location, Result};
use crate::format::{ClassEncoding, TaskDef, TaskKind};

/// Key-value metadata key holding the format version (`1`).
pub const META_FORMAT_VERSION: &str = "must.format_version";
/// Key-value metadata key holding `images` or `labels`.
pub const META_TABLE: &str = "must.table";
/// Key-value metadata key holding the task definition as JSON (label files).
pub const META_TASK: &str = "must.task";

fn list_of(dt: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", dt, true)))
}

fn fixed_list_of(dt: DataType, n: i32) -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new("item", dt, true)), n)
}

/// The schema of an image shard.
pub fn image_schema() -> Schema {
    Schema::new(vec![
        Field::new("image_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("image", DataType::Binary, true),
        Field::new("uri", DataType::Utf8, true),
        Field::new("width", DataType::UInt32, false),
        Field::new("height", DataType::UInt32, false),
    ])
}

/// The schema of a label file of `task`. Segmentation files carry the
/// optional `confidence` column when `with_confidence` is set.
pub fn label_schema(task: &TaskDef, with_confidence: bool) -> Schema {
    let mut fields = vec![Field::new("image_id", DataType::Utf8, false)];
    match &task.kind {
        TaskKind::Classification {
            encoding: ClassEncoding::Topk,
            ..
        } => {
            fields.push(Field::new("classes", list_of(DataType::UInt32), true));
            fields.push(Field::new("probs", list_of(DataType::Float32), true));
        }
        TaskKind::Classification {
            encoding: ClassEncoding::Dense,
            num_classes,
            ..
        } => {
            fields.push(Field::new(
                "probs",
                fixed_list_of(DataType::Float32, *num_classes as i32),
                true,
            ));
        }
        TaskKind::Detection { .. } => {
            fields.push(Field::new(
                "boxes",
                list_of(fixed_list_of(DataType::Float32, 4)),
                true,
            ));
            fields.push(Field::new("classes", list_of(DataType::UInt32), true));
            fields.push(Field::new("scores", list_of(DataType::Float32), true));
        }
        TaskKind::Segmentation { .. } => {
            fields.push(Field::new("mask", DataType::Binary, true));
            fields.push(Field::new("mask_height", DataType::UInt32, true));
            fields.push(Field::new("mask_width", DataType::UInt32, true));
            if with_confidence {
                fields.push(Field::new("confidence", DataType::Binary, true));
            }
        }
        TaskKind::Depth { .. } => {
            fields.push(Field::new("depth", DataType::Binary, true));
            fields.push(Field::new("depth_height", DataType::UInt32, true));
            fields.push(Field::new("depth_width", DataType::UInt32, true));
        }
    }
    Schema::new(fields)
}

/// The type as `schemas/` writes it: `Utf8`, `List<UInt32>`,
/// `FixedSizeList<Float32, 4>`. Child field names are not part of it.
pub fn arrow_type_name(dt: &DataType) -> String {
    match dt {
        DataType::List(f) => format!("List<{}>", arrow_type_name(f.data_type())),
        DataType::LargeList(f) => format!("LargeList<{}>", arrow_type_name(f.data_type())),
        DataType::FixedSizeList(f, n) => {
            format!("FixedSizeList<{}, {n}>", arrow_type_name(f.data_type()))
        }
        DataType::Dictionary(k, v) => {
            format!("Dictionary<{}, {}>", arrow_type_name(k), arrow_type_name(v))
        }
        other => format!("{other:?}"),
    }
}

/// The logical type FORMAT.md means: string and binary encodings
/// (dictionary, large, view) and list offsets widths are the same type;
/// list child names (`item` vs `element`) and nullability do not matter.
pub fn logical_type_name(dt: &DataType) -> String {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "Utf8".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "Binary".into(),
        DataType::Dictionary(_, v) => logical_type_name(v),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) => {
            format!("List<{}>", logical_type_name(f.data_type()))
        }
        DataType::FixedSizeList(f, n) => {
            format!("FixedSizeList<{}, {n}>", logical_type_name(f.data_type()))
        }
        other => format!("{other:?}"),
    }
}

/// Refuses a footer whose row counts are negative or add up past 2^63:
/// readers sum and allocate by them.
pub fn check_footer_counts(
    meta: &parquet::file::metadata::ParquetMetaData,
    file: &str,
) -> Result<()> {
    let mut total: i64 = 0;
    for (g, rg) in meta.row_groups().iter().enumerate() {
        let n = rg.num_rows();
        total = total.checked_add(n).filter(|_| n >= 0).ok_or_else(|| {
            Error::value(
                Location::file(file),
                format!("the footer says row group {g} has {n} rows"),
            )
        })?;
    }
    if meta.file_metadata().num_rows() < 0 {
        return Err(Error::value(
            Location::file(file),
            format!(
                "the footer says the file has {} rows",
                meta.file_metadata().num_rows()
            ),
        ));
    }
    Ok(())
}
