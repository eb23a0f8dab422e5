//! [`Batch`] → named `tch::Tensor`s on a device (cargo feature `tch`).
//!
//! On CUDA every field goes through a pinned host buffer (from libtorch's
//! caching host allocator, which keeps a buffer until its copy is done) and
//! a non-blocking copy, so the copies of a batch overlap with the trainer's
//! work. tch tensors are not `Sync`: call this on the trainer's thread; the
//! loader's threads only fill plain buffers.

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};

use crate::loader::{Batch, Images, TaskData};

/// The batch's fields as tensors on `device`, named as in FORMAT.md section 5:
/// `images`, `padding`, and per task `<task>.present` plus
/// `<task>.probs` (classification), `<task>.boxes`, `<task>.classes`,
/// `<task>.scores`, `<task>.valid` (detection), `<task>.mask`
/// (segmentation), `<task>.depth`, `<task>.valid` (depth).
pub fn to_tensors(batch: &Batch, device: Device) -> BTreeMap<String, Tensor> {
    let b = batch.batch_size as i64;
    let (h, w) = (batch.height as i64, batch.width as i64);
    let mut out = BTreeMap::new();
    let images = match &batch.images {
        Images::U8(v) => put(v, &[b, 3, h, w], device),
        Images::F32(v) => put(v, &[b, 3, h, w], device),
    };
    out.insert("images".to_owned(), images);
    out.insert("padding".to_owned(), put(&batch.padding, &[b], device));
    for (name, t) in &batch.tasks {
        let key = |f: &str| format!("{name}.{f}");
        out.insert(key("present"), put(&t.present, &[b], device));
        match &t.data {
            TaskData::Classification { num_classes, probs } => {
                out.insert(key("probs"), put(probs, &[b, *num_classes as i64], device));
            }
            TaskData::Detection {
                max_boxes,
                boxes,
                classes,
                scores,
                valid,
            } => {
                let n = *max_boxes as i64;
                out.insert(key("boxes"), put(boxes, &[b, n, 4], device));
                out.insert(key("classes"), put(classes, &[b, n], device));
                out.insert(key("scores"), put(scores, &[b, n], device));
                out.insert(key("valid"), put(valid, &[b, n], device));
            }
            TaskData::Segmentation { mask, .. } => {
                out.insert(key("mask"), put(mask, &[b, h, w], device));
            }
            TaskData::Depth { depth, valid } => {
                out.insert(key("depth"), put(depth, &[b, 1, h, w], device));
                out.insert(key("valid"), put(valid, &[b, 1, h, w], device));
            }
        }
    }
    out
}

/// Element types the batch holds.
pub trait Plain: Copy {
    /// The tensor kind.
    const KIND: Kind;
}
impl Plain for u8 {
    const KIND: Kind = Kind::Uint8;
}
impl Plain for bool {
    const KIND: Kind = Kind::Bool;
}
impl Plain for i64 {
    const KIND: Kind = Kind::Int64;
}
impl Plain for f32 {
    const KIND: Kind = Kind::Float;
}

/// One copy into a (pinned, on CUDA) host tensor, then a non-blocking copy
/// to the device.
pub fn put<T: Plain>(data: &[T], shape: &[i64], device: Device) -> Tensor {
    let n: i64 = shape.iter().product();
    assert_eq!(
        n as usize,
        data.len(),
        "shape {shape:?} does not hold {} values",
        data.len()
    );
    let host = Tensor::empty(shape, (T::KIND, Device::Cpu));
    let host = if device.is_cuda() {
        host.pin_memory(device)
    } else {
        host
    };
    if !data.is_empty() {
        // SAFETY: `host` is a fresh contiguous tensor of `data.len()` elements
        // of T's layout (u8, bool as one byte, i64, f32), not shared yet.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr() as *const u8,
                host.data_ptr() as *mut u8,
                std::mem::size_of_val(data),
            );
        }
    }
    if device.is_cuda() {
        host.to_device_(device, T::KIND, true, false)
    } else {
        host
    }
}
