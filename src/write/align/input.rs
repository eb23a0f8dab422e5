//! Input columns to the format's: mapped names, box formats, dense or
//! top-k probabilities, masks given as PNG images.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};

use super::LabelAligner;
use crate::error::{Error, Location, Result};
use crate::format::{ClassEncoding, MaskDtype, TaskDef, TaskKind};

impl LabelAligner<'_> {
    /// Renames mapped columns and converts alternative encodings to the
    /// format's columns.
    pub(super) fn canonical(
        &self,
        batch: &RecordBatch,
        loc: &Location,
    ) -> Result<(RecordBatch, TaskDef, bool)> {
        let mut fields: Vec<Field> = vec![];
        let mut cols: Vec<ArrayRef> = vec![];
        let schema = batch.schema();
        for (to, from) in &self.opts.columns {
            if schema.column_with_name(from).is_none() {
                return Err(Error::schema(
                    loc.clone(),
                    format!("the mapping {to}={from} names no column of the input ({from:?})"),
                ));
            }
        }
        let renamed: BTreeMap<&str, &str> = self
            .opts
            .columns
            .iter()
            .map(|(to, from)| (from.as_str(), to.as_str()))
            .collect();
        for (f, c) in schema.fields().iter().zip(batch.columns()) {
            let name = match renamed.get(f.name().as_str()) {
                Some(to) => *to,
                // A column of a mapped name that the mapping replaces.
                None if self.opts.columns.contains_key(f.name()) => continue,
                None => f.name().as_str(),
            };
            fields.push(f.as_ref().clone().with_name(name));
            cols.push(c.clone());
        }
        let mut task = self.task.clone();
        let mut dense_for_topk = false;
        if let TaskKind::Classification {
            encoding: ClassEncoding::Topk,
            ..
        } = &task.kind
        {
            let has_classes = fields.iter().any(|f| f.name() == "classes");
            if !has_classes && fields.iter().any(|f| f.name() == "probs") {
                // All C probabilities for a top-k task: read as dense, keep the top k.
                if let TaskKind::Classification { encoding, .. } = &mut task.kind {
                    *encoding = ClassEncoding::Dense;
                }
                dense_for_topk = true;
            }
        }
        if matches!(task.kind, TaskKind::Segmentation { .. })
            && !fields.iter().any(|f| f.name() == "mask_height")
        {
            if let Some(i) = fields.iter().position(|f| f.name() == "mask") {
                let (mask, h, w) = decode_png_column(&cols[i], &task, loc)?;
                fields[i] = Field::new("mask", arrow_schema::DataType::Binary, true);
                cols[i] = mask;
                fields.push(Field::new(
                    "mask_height",
                    arrow_schema::DataType::UInt32,
                    true,
                ));
                cols.push(h);
                fields.push(Field::new(
                    "mask_width",
                    arrow_schema::DataType::UInt32,
                    true,
                ));
                cols.push(w);
            }
        }
        let b = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
            .map_err(|e| Error::schema(loc.clone(), e.to_string()))?;
        Ok((b, task, dense_for_topk))
    }
}

/// A `mask` column of PNG images → raw masks in the task's dtype with their sizes.
pub(super) fn decode_png_column(
    col: &ArrayRef,
    task: &TaskDef,
    loc: &Location,
) -> Result<(ArrayRef, ArrayRef, ArrayRef)> {
    use arrow_array::builder::{BinaryBuilder, UInt32Builder};
    let TaskKind::Segmentation { dtype, .. } = &task.kind else {
        unreachable!("segmentation only")
    };
    let bin = arrow_cast::cast(col, &arrow_schema::DataType::Binary)
        .map_err(|e| Error::schema(loc.clone(), format!("column \"mask\": {e}")))?;
    let bin = arrow_array::cast::AsArray::as_binary::<i32>(&bin);
    let (mut m, mut h, mut w) = (
        BinaryBuilder::new(),
        UInt32Builder::new(),
        UInt32Builder::new(),
    );
    for i in 0..bin.len() {
        if bin.is_null(i) {
            m.append_null();
            h.append_null();
            w.append_null();
            continue;
        }
        let bytes = bin.value(i);
        let bad = |m: String| Error::value(loc.at(i, None), format!("mask: {m}"));
        if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(bad(
                "no mask_height/mask_width columns and not a PNG image".into()
            ));
        }
        let mut reader =
            image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Png);
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(crate::codec::max_image_pixels().saturating_mul(2));
        reader.limits(limits);
        let img = reader.decode().map_err(|e| bad(format!("PNG: {e}")))?;
        let (iw, ih) = (img.width(), img.height());
        let raw: Vec<u8> = match (dtype, img) {
            (MaskDtype::U8, image::DynamicImage::ImageLuma8(g)) => g.into_raw(),
            (MaskDtype::U16, image::DynamicImage::ImageLuma8(g)) => g
                .into_raw()
                .into_iter()
                .flat_map(|v| (v as u16).to_le_bytes())
                .collect(),
            (MaskDtype::U16, image::DynamicImage::ImageLuma16(g)) => g
                .into_raw()
                .into_iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            (d, other) => {
                return Err(bad(format!(
                "a {:?} PNG for a {} mask (one gray channel expected: 8 bits, or 16 for u16 tasks)",
                other.color(),
                match d {
                    MaskDtype::U8 => "u8",
                    MaskDtype::U16 => "u16",
                }
            )))
            }
        };
        m.append_value(raw);
        h.append_value(ih);
        w.append_value(iw);
    }
    Ok((
        Arc::new(m.finish()),
        Arc::new(h.finish()),
        Arc::new(w.finish()),
    ))
}
