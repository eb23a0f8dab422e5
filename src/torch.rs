//! [`Batch`] → named `tch::Tensor`s on a device (cargo feature `tch`).
//!
//! On CUDA every field goes through a pinned host buffer (from libtorch's
//! caching host allocator, which keeps a buffer until its copy is done) and
//! a non-blocking copy, so the copies of a batch overlap with the trainer's
//! work. tch tensors are not `Sync`: call this on the trainer's thread; the
//! loader's threads only fill plain buffers.

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};

use crate::loader::{Batch, Images, Mask, TaskData};

/// The batch's fields as tensors on `device`, named as in FORMAT.md section 5:
/// `images`, `padding`, and per task `<task>.present` plus
/// `<task>.probs` (classification), `<task>.boxes`, `<task>.classes`,
/// `<task>.scores`, `<task>.valid` (detection), `<task>.mask`
/// (segmentation, i64), `<task>.depth` (f32, 0 where invalid) and
/// `<task>.valid` (depth). The host buffers are copied as they are (u8 or
/// u16 masks, f16 depth) and widened on the device, after the copy.
pub fn to_tensors(batch: &Batch, device: Device) -> BTreeMap<String, Tensor> {
    to_tensors_with(batch, device, None)
}

/// [`to_tensors`] with u8 images turned on the device into f32
/// `(x / 255 − mean) / std` per channel when `normalize` is given.
pub fn to_tensors_with(
    batch: &Batch,
    device: Device,
    normalize: Option<([f32; 3], [f32; 3])>,
) -> BTreeMap<String, Tensor> {
    let b = batch.batch_size as i64;
    let (h, w) = (batch.height as i64, batch.width as i64);
    let (lh, lw) = (batch.label_height as i64, batch.label_width as i64);
    let mut out = BTreeMap::new();
    let images = match &batch.images {
        Images::U8(v) => {
            let t = put(v, &[b, 3, h, w], device);
            match normalize {
                Some((mean, std)) => {
                    let m = Tensor::from_slice(&mean)
                        .to_device(device)
                        .view([1, 3, 1, 1]);
                    let s = Tensor::from_slice(&std)
                        .to_device(device)
                        .view([1, 3, 1, 1]);
                    (t.to_kind(Kind::Float) / 255.0 - m) / s
                }
                None => t,
            }
        }
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
                let m = match mask {
                    Mask::U8(v) => put(v, &[b, lh, lw], device).to_kind(Kind::Int64),
                    // u16 travels as i16 bits; the mask restores 0..=65535.
                    Mask::U16(v) => put(v, &[b, lh, lw], device)
                        .to_kind(Kind::Int64)
                        .bitwise_and(0xFFFF),
                };
                out.insert(key("mask"), m);
            }
            TaskData::Depth { depth } => {
                let d = put(depth, &[b, 1, lh, lw], device);
                let valid = d.isfinite();
                let d = d.to_kind(Kind::Float).nan_to_num(0.0, 0.0, 0.0);
                out.insert(key("depth"), d);
                out.insert(key("valid"), valid);
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
impl Plain for u16 {
    const KIND: Kind = Kind::Int16;
}
impl Plain for half::f16 {
    const KIND: Kind = Kind::Half;
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
        // of T's layout (u8, bool as one byte, u16 as i16 bits, f16, i64,
        // f32), not shared yet.
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
