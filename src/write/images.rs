//! The image shard writer: encoded images in, one Parquet file out, with row
//! groups bounded in bytes. Images are stored exactly as given.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, StringBuilder, UInt32Builder};
use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;

use crate::codec::sniff_image;
use crate::error::{Error, Location, Result};
use crate::format::image_schema;
use crate::write::{base_properties, blob_column, EncodedFile};

/// Limits of an image shard.
#[derive(Debug, Clone)]
pub struct ImageShardOptions {
    /// A row group is closed once it holds this many image bytes (default 64 MiB).
    pub row_group_bytes: usize,
    /// ... or this many rows (default 4096).
    pub row_group_rows: usize,
    /// Ingest starts a new shard past this many image bytes (default 512 MiB).
    pub shard_bytes: usize,
    /// ... or this many rows (default 100,000).
    pub shard_rows: usize,
    /// Images over this many pixels (from the header) are refused (default
    /// [`max_image_pixels`](crate::codec::max_image_pixels)): the loader
    /// would refuse them too.
    pub max_pixels: u64,
}

impl Default for ImageShardOptions {
    fn default() -> Self {
        Self {
            row_group_bytes: 64 << 20,
            row_group_rows: 4096,
            shard_bytes: 512 << 20,
            shard_rows: 100_000,
            max_pixels: crate::codec::max_image_pixels(),
        }
    }
}

/// Builds one image shard.
pub struct ImageShardWriter {
    options: ImageShardOptions,
    writer: ArrowWriter<Vec<u8>>,
    ids: HashSet<String>,
    group: Group,
    row_groups: Vec<u64>,
    sources: BTreeMap<String, u64>,
    bytes: usize,
}

#[derive(Default)]
struct Group {
    id: StringBuilder,
    source: StringBuilder,
    image: BinaryBuilder,
    uri: StringBuilder,
    width: UInt32Builder,
    height: UInt32Builder,
    rows: usize,
    bytes: usize,
}

impl ImageShardWriter {
    /// A new, empty shard.
    pub fn new(options: ImageShardOptions) -> Result<Self> {
        let props = blob_column(
            base_properties("images", vec![]),
            "image",
            Compression::UNCOMPRESSED,
        )
        .build();
        let writer = ArrowWriter::try_new(Vec::new(), Arc::new(image_schema()), Some(props))
            .map_err(|e| Error::parquet("image shard writer", e))?;
        Ok(Self {
            options,
            writer,
            ids: HashSet::new(),
            group: Group::default(),
            row_groups: vec![],
            sources: BTreeMap::new(),
            bytes: 0,
        })
    }

    fn check_id(&mut self, image_id: &str) -> Result<()> {
        if image_id.is_empty() || !self.ids.insert(image_id.to_owned()) {
            let why = if image_id.is_empty() {
                "empty image_id"
            } else {
                "image_id appears twice in the shard"
            };
            return Err(Error::value(
                Location::file("image shard writer").at(self.rows() as usize, Some(image_id)),
                why,
            ));
        }
        Ok(())
    }

    /// Adds an encoded image; width and height come from its header.
    /// Returns them. `image_id` must be new to this shard.
    pub fn add_image(&mut self, image_id: &str, source: &str, bytes: &[u8]) -> Result<(u32, u32)> {
        let (_, w, h) = sniff_image(bytes)
            .and_then(|(k, w, h)| {
                crate::codec::check_pixels(w, h, self.options.max_pixels).map(|_| (k, w, h))
            })
            .map_err(|reason| Error::NotAnImage {
                file: image_id.to_owned(),
                reason,
            })?;
        self.check_id(image_id)?;
        let g = &mut self.group;
        g.id.append_value(image_id);
        g.source.append_value(source);
        g.image.append_value(bytes);
        g.uri.append_null();
        g.width.append_value(w);
        g.height.append_value(h);
        self.push(source, bytes.len())?;
        Ok((w, h))
    }

    /// Adds an image stored elsewhere, by URI, with its known size.
    pub fn add_uri(
        &mut self,
        image_id: &str,
        source: &str,
        uri: &str,
        width: u32,
        height: u32,
    ) -> Result<()> {
        if width == 0 || height == 0 || uri.is_empty() {
            return Err(Error::value(
                Location::file("image shard writer").at(self.rows() as usize, Some(image_id)),
                format!("uri {uri:?} with size {width}x{height} is not valid"),
            ));
        }
        self.check_id(image_id)?;
        let g = &mut self.group;
        g.id.append_value(image_id);
        g.source.append_value(source);
        g.image.append_null();
        g.uri.append_value(uri);
        g.width.append_value(width);
        g.height.append_value(height);
        self.push(source, uri.len())
    }

    fn push(&mut self, source: &str, bytes: usize) -> Result<()> {
        *self.sources.entry(source.to_owned()).or_default() += 1;
        self.group.rows += 1;
        self.group.bytes += bytes;
        self.bytes += bytes;
        if self.group.bytes >= self.options.row_group_bytes
            || self.group.rows >= self.options.row_group_rows
        {
            self.flush_group()?;
        }
        Ok(())
    }

    fn flush_group(&mut self) -> Result<()> {
        if self.group.rows == 0 {
            return Ok(());
        }
        let mut g = std::mem::take(&mut self.group);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(g.id.finish()),
            Arc::new(g.source.finish()),
            Arc::new(g.image.finish()),
            Arc::new(g.uri.finish()),
            Arc::new(g.width.finish()),
            Arc::new(g.height.finish()),
        ];
        let batch = RecordBatch::try_new(Arc::new(image_schema()), cols)
            .map_err(|e| Error::arrow("image shard writer", e))?;
        let err = |e| Error::parquet("image shard writer", e);
        self.writer.write(&batch).map_err(err)?;
        self.writer.flush().map_err(err)?;
        self.row_groups.push(g.rows as u64);
        Ok(())
    }

    /// Rows added so far.
    pub fn rows(&self) -> u64 {
        self.row_groups.iter().sum::<u64>() + self.group.rows as u64
    }

    /// Image bytes added so far.
    pub fn image_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the shard reached its size limits.
    pub fn is_full(&self) -> bool {
        self.bytes >= self.options.shard_bytes || self.rows() as usize >= self.options.shard_rows
    }

    /// Closes the file.
    pub fn finish(mut self) -> Result<EncodedFile> {
        self.flush_group()?;
        let rows = self.rows();
        let bytes = self
            .writer
            .into_inner()
            .map_err(|e| Error::parquet("image shard writer", e))?;
        Ok(EncodedFile {
            bytes: bytes.into(),
            rows,
            row_groups: self.row_groups,
            sources: self.sources,
            labeled: 0,
        })
    }
}
