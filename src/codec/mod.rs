//! Pure, I/O-free conversions between bytes, typed labels and Arrow arrays:
//! image header sniffing, mask/depth/confidence maps, and the label ↔
//! record-batch mapping with the value checks every writer and reader shares.

mod arrow;
mod image;
mod kind;
pub mod pixels;

pub(crate) use self::arrow::image_ids;
pub use self::arrow::{batch_to_labels, labels_to_batch, normalize_column, LabelColumns};
pub use self::image::{
    check_pixels, decode_rgb, max_image_pixels, set_max_image_pixels, sniff_image, ImageKind, Rgb,
    DEFAULT_MAX_PIXELS,
};
pub use self::kind::{ClassLabel, DepthMap, Detections, Label, LabelRef, SegMap};
pub use self::pixels::{to_planar, Geometry, Resizer};
