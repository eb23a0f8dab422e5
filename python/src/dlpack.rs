//! DLPack both ways: the loader's buffers handed to torch or numpy without a
//! copy (the buffer lives until the consumer's tensor is freed), and arrays
//! of numpy or torch read into Rust for the label writer.

use std::any::Any;
use std::ffi::{c_void, CStr};
use std::sync::Arc;

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

/// `kDLCPU`.
const CPU: i32 = 1;
/// Type codes (`kDLInt`, `kDLUInt`, `kDLFloat`, `kDLBool`).
pub const INT: u8 = 0;
/// Unsigned integers.
pub const UINT: u8 = 1;
/// IEEE floats.
pub const FLOAT: u8 = 2;
/// Booleans, one byte each.
pub const BOOL: u8 = 6;

const NAME: &CStr = c"dltensor";
const USED: &CStr = c"used_dltensor";

#[repr(C)]
#[derive(Clone, Copy)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}

/// An element type: code, bits, lanes (1).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DType {
    /// One of the type codes.
    pub code: u8,
    /// Bits per element.
    pub bits: u8,
    /// Always 1 here.
    pub lanes: u16,
}

impl DType {
    /// A scalar type.
    pub const fn new(code: u8, bits: u8) -> Self {
        Self {
            code,
            bits,
            lanes: 1,
        }
    }

    /// As numpy would name it.
    pub fn name(&self) -> String {
        match self.code {
            INT => format!("int{}", self.bits),
            UINT => format!("uint{}", self.bits),
            FLOAT => format!("float{}", self.bits),
            BOOL => "bool".into(),
            c => format!("type code {c} ({} bits)", self.bits),
        }
    }
}

#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

#[repr(C)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

/// What keeps an exported tensor's memory alive: the owner and the shape
/// the tensor points into.
struct Export {
    _owner: Arc<dyn Any + Send + Sync>,
    _shape: Vec<i64>,
    managed: DLManagedTensor,
}

unsafe extern "C" fn free_export(m: *mut DLManagedTensor) {
    if m.is_null() {
        return;
    }
    // SAFETY: `manager_ctx` is the `Box<Export>` leaked by `Buffer::__dlpack__`,
    // freed exactly once (by the consumer, or by the capsule when unconsumed).
    unsafe { drop(Box::from_raw((*m).manager_ctx as *mut Export)) };
}

unsafe extern "C" fn free_capsule(capsule: *mut ffi::PyObject) {
    // A consumed capsule is renamed `used_dltensor`: its consumer frees it.
    // SAFETY: called by Python on a capsule this module created.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, NAME.as_ptr()) == 1 {
            let m = ffi::PyCapsule_GetPointer(capsule, NAME.as_ptr()) as *mut DLManagedTensor;
            if let Some(d) = (*m).deleter {
                d(m);
            }
        }
    }
}

/// A host array of the loader (or any Rust owner), exported by DLPack
/// (`torch.from_dlpack`, `numpy.from_dlpack`) without a copy. Each export
/// holds the owner until the consumer frees its tensor.
#[pyclass(frozen, module = "must_ds._native")]
pub struct Buffer {
    owner: Arc<dyn Any + Send + Sync>,
    ptr: usize,
    shape: Vec<i64>,
    dtype: DType,
}

impl Buffer {
    /// `len` elements of `dtype` at `ptr`, which `owner` keeps alive and
    /// unchanged; `shape` multiplies to `len`.
    pub fn new<T>(
        owner: Arc<dyn Any + Send + Sync>,
        data: &[T],
        shape: Vec<i64>,
        dtype: DType,
    ) -> Self {
        debug_assert_eq!(shape.iter().product::<i64>() as usize, data.len());
        debug_assert_eq!(std::mem::size_of::<T>() * 8, dtype.bits as usize);
        Self {
            owner,
            ptr: data.as_ptr() as usize,
            shape,
            dtype,
        }
    }
}

#[pymethods]
impl Buffer {
    /// The DLPack export (a `dltensor` capsule on the CPU).
    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__(
        &self,
        py: Python<'_>,
        stream: Option<Bound<'_, PyAny>>,
        max_version: Option<Bound<'_, PyAny>>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        let _ = (stream, max_version);
        if let Some((t, _)) = dl_device {
            if t != CPU {
                return Err(PyBufferError::new_err(
                    "must_ds buffers live in host memory; move the tensor after import",
                ));
            }
        }
        if copy == Some(true) {
            return Err(PyBufferError::new_err(
                "must_ds buffers are shared, not copied; copy the imported tensor",
            ));
        }
        let mut export = Box::new(Export {
            _owner: self.owner.clone(),
            _shape: self.shape.clone(),
            managed: DLManagedTensor {
                dl_tensor: DLTensor {
                    data: self.ptr as *mut c_void,
                    device: DLDevice {
                        device_type: CPU,
                        device_id: 0,
                    },
                    ndim: self.shape.len() as i32,
                    dtype: self.dtype,
                    shape: std::ptr::null_mut(),
                    strides: std::ptr::null_mut(),
                    byte_offset: 0,
                },
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(free_export),
            },
        });
        export.managed.dl_tensor.shape = export._shape.as_mut_ptr();
        let raw = Box::into_raw(export);
        // SAFETY: `raw` is a live, leaked Export; its `managed` field is what
        // the capsule points to, and `manager_ctx` lets the deleter find the box.
        unsafe {
            (*raw).managed.manager_ctx = raw as *mut c_void;
            let m = &mut (*raw).managed as *mut DLManagedTensor;
            let cap = ffi::PyCapsule_New(m as *mut c_void, NAME.as_ptr(), Some(free_capsule));
            if cap.is_null() {
                free_export(m);
                return Err(PyErr::fetch(py));
            }
            Ok(Bound::from_owned_ptr(py, cap).unbind())
        }
    }

    /// `(kDLCPU, 0)`.
    fn __dlpack_device__(&self) -> (i32, i32) {
        (CPU, 0)
    }

    /// The address of the first element (for checks that no copy is made).
    #[getter]
    fn address(&self) -> usize {
        self.ptr
    }

    /// The shape.
    #[getter]
    fn shape(&self) -> Vec<i64> {
        self.shape.clone()
    }
}

/// An array read from Python: contiguous bytes with their type and shape.
pub struct Array {
    /// The element type.
    pub dtype: DType,
    /// The shape.
    pub shape: Vec<usize>,
    /// Row-major bytes, native endian.
    pub bytes: Vec<u8>,
}

/// Reads a CPU array that has `__dlpack__` (numpy, torch), copying it.
pub fn import(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Array> {
    let bad = |m: String| PyValueError::new_err(format!("{what}: {m}"));
    let cap = obj
        .call_method0("__dlpack__")
        .map_err(|e| bad(format!("not an array with __dlpack__ ({e})")))?;
    let p = cap.as_ptr();
    // SAFETY: the capsule is checked by name before its pointer is read; the
    // tensor it describes stays valid until its deleter runs, which happens
    // below, after the copy, and only once (the capsule is renamed first).
    unsafe {
        if ffi::PyCapsule_IsValid(p, NAME.as_ptr()) != 1 {
            ffi::PyErr_Clear();
            return Err(bad("__dlpack__ did not give a dltensor capsule".into()));
        }
        let m = ffi::PyCapsule_GetPointer(p, NAME.as_ptr()) as *mut DLManagedTensor;
        if m.is_null() {
            return Err(PyErr::fetch(obj.py()));
        }
        if ffi::PyCapsule_SetName(p, USED.as_ptr()) != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        let t = &(*m).dl_tensor;
        let r = read_tensor(t).map_err(bad);
        if let Some(d) = (*m).deleter {
            d(m);
        }
        r
    }
}

/// # Safety
/// `t` must describe a live tensor.
unsafe fn read_tensor(t: &DLTensor) -> Result<Array, String> {
    if t.device.device_type != CPU {
        return Err("the array is not in host memory (move it to the CPU first)".into());
    }
    if t.dtype.lanes != 1 || !t.dtype.bits.is_multiple_of(8) || t.dtype.bits == 0 {
        return Err(format!("unsupported element type {}", t.dtype.name()));
    }
    if !(0..=8).contains(&t.ndim) {
        return Err(format!("{} dimensions", t.ndim));
    }
    let nd = t.ndim as usize;
    // SAFETY (caller): shape and strides hold ndim values when not null.
    let shape: Vec<i64> = if nd == 0 {
        vec![]
    } else {
        unsafe { std::slice::from_raw_parts(t.shape, nd) }.to_vec()
    };
    if shape.iter().any(|&d| d < 0) {
        return Err(format!("negative shape {shape:?}"));
    }
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("the shape overflows")?;
    let size = (t.dtype.bits / 8) as usize;
    if n > 0 && !t.strides.is_null() && nd > 0 {
        let strides = unsafe { std::slice::from_raw_parts(t.strides, nd) };
        let mut want = 1i64;
        for i in (0..nd).rev() {
            if shape[i] > 1 && strides[i] != want {
                return Err("the array is not contiguous (use numpy.ascontiguousarray)".into());
            }
            want *= shape[i] as i64;
        }
    }
    let len = n.checked_mul(size).ok_or("the array is too large")?;
    let bytes = if len == 0 {
        vec![]
    } else {
        let start = unsafe { (t.data as *const u8).add(t.byte_offset as usize) };
        unsafe { std::slice::from_raw_parts(start, len) }.to_vec()
    };
    Ok(Array {
        dtype: t.dtype,
        shape,
        bytes,
    })
}

impl Array {
    fn elems(&self) -> usize {
        self.bytes.len() / (self.dtype.bits / 8) as usize
    }

    /// Every value as f64 (any integer, bool or float type).
    pub fn to_f64(&self) -> Result<Vec<f64>, String> {
        let b = &self.bytes;
        let n = self.elems();
        let get = |i: usize, w: usize| &b[i * w..(i + 1) * w];
        let v: Vec<f64> = match (self.dtype.code, self.dtype.bits) {
            (FLOAT, 16) => (0..n)
                .map(|i| {
                    half::f16::from_ne_bytes(get(i, 2).try_into().unwrap_or_default()).to_f64()
                })
                .collect(),
            (FLOAT, 32) => (0..n)
                .map(|i| f32::from_ne_bytes(get(i, 4).try_into().unwrap_or_default()) as f64)
                .collect(),
            (FLOAT, 64) => (0..n)
                .map(|i| f64::from_ne_bytes(get(i, 8).try_into().unwrap_or_default()))
                .collect(),
            _ => self.to_i128()?.into_iter().map(|x| x as f64).collect(),
        };
        Ok(v)
    }

    /// Every value as f32, from any float or integer type (not bool).
    pub fn floats(&self) -> Result<Vec<f32>, String> {
        if self.dtype.code == BOOL && !self.bytes.is_empty() {
            return Err("has dtype bool; numbers expected".into());
        }
        Ok(self.to_f64()?.into_iter().map(|x| x as f32).collect())
    }

    /// Every value as an integer (integer and bool types only).
    pub fn to_i128(&self) -> Result<Vec<i128>, String> {
        if self.bytes.is_empty() {
            // `[]` becomes float64 in numpy: an empty list of ids is fine.
            return Ok(vec![]);
        }
        let b = &self.bytes;
        let n = self.elems();
        let w = (self.dtype.bits / 8) as usize;
        let get = |i: usize| &b[i * w..(i + 1) * w];
        let v = match (self.dtype.code, self.dtype.bits) {
            (BOOL, 8) | (UINT, 8) => b.iter().map(|&x| x as i128).collect(),
            (INT, 8) => b.iter().map(|&x| x as i8 as i128).collect(),
            (UINT, 16) => (0..n)
                .map(|i| u16::from_ne_bytes(get(i).try_into().unwrap_or_default()) as i128)
                .collect(),
            (INT, 16) => (0..n)
                .map(|i| i16::from_ne_bytes(get(i).try_into().unwrap_or_default()) as i128)
                .collect(),
            (UINT, 32) => (0..n)
                .map(|i| u32::from_ne_bytes(get(i).try_into().unwrap_or_default()) as i128)
                .collect(),
            (INT, 32) => (0..n)
                .map(|i| i32::from_ne_bytes(get(i).try_into().unwrap_or_default()) as i128)
                .collect(),
            (UINT, 64) => (0..n)
                .map(|i| u64::from_ne_bytes(get(i).try_into().unwrap_or_default()) as i128)
                .collect(),
            (INT, 64) => (0..n)
                .map(|i| i64::from_ne_bytes(get(i).try_into().unwrap_or_default()) as i128)
                .collect(),
            _ => {
                return Err(format!(
                    "has dtype {}; integers expected",
                    self.dtype.name()
                ))
            }
        };
        Ok(v)
    }

    /// Integers in `0..=max`.
    pub fn ints(&self, max: u32) -> Result<Vec<u32>, String> {
        let v = self.to_i128()?;
        if let Some((i, x)) = v
            .iter()
            .enumerate()
            .find(|(_, &x)| x < 0 || x > max as i128)
        {
            return Err(format!("value {x} at index {i} is outside 0..={max}"));
        }
        Ok(v.into_iter().map(|x| x as u32).collect())
    }
}
