//! `must_ds._native`: the Rust side of the `must_ds` Python package. Each
//! class is a thin wrapper of the crate's own types; the Python modules in
//! `python/must_ds/` only shape arguments and results.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::OnceLock;

use must_ds::Error;
use pyo3::prelude::*;

// Rust's allocations in this module (the loader's buffers, Arrow and Parquet)
// go to mimalloc, as in the must-ds command: glibc's malloc, with buffers
// allocated on the loader's threads and freed on the trainer's, keeps far
// more resident. Python's own allocations are not affected.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (see src/main.rs of the crate).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

mod dataset;
mod dlpack;
mod loader;
mod options;

pyo3::create_exception!(
    must_ds,
    MustError,
    pyo3::exceptions::PyException,
    "An error of must-ds. Attributes `file`, `row_group`, `row`, `image_id` and `shard` say where, when known (else None)."
);
pyo3::create_exception!(
    must_ds,
    CorruptDataError,
    MustError,
    "A data file that cannot be used: unreadable, not what the log says, an image that does not decode."
);
pyo3::create_exception!(
    must_ds,
    InvalidDataError,
    MustError,
    "A value, column or row that breaks the format (FORMAT.md), or misaligned labels."
);
pyo3::create_exception!(
    must_ds,
    ConflictError,
    MustError,
    "A commit that cannot be made (labels already there without replace, a lost race after every retry)."
);
pyo3::create_exception!(
    must_ds,
    NotFoundError,
    MustError,
    "No dataset, version, task or image shard of that name."
);

/// The runtime of every store operation of the package.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("must-py")
            .enable_all()
            .build()
            .expect("starting the tokio runtime of must_ds")
    })
}

/// Runs a future with the GIL released.
pub(crate) fn block_on<F: Future + Send>(py: Python<'_>, f: F) -> F::Output
where
    F::Output: Send,
{
    py.detach(|| runtime().block_on(f))
}

/// Opens a dataset with object-store settings.
pub(crate) fn open_dataset(
    py: Python<'_>,
    root: &str,
    version: Option<u64>,
    storage_options: Option<BTreeMap<String, String>>,
) -> PyResult<must_ds::Dataset> {
    let options = must_ds::DatasetOptions {
        storage_options: storage_options.unwrap_or_default(),
        ..Default::default()
    };
    block_on(py, must_ds::Dataset::open_with(root, version, options)).map_err(|e| to_py_err(py, e))
}

/// The Python exception of an error, with where it happened as attributes.
pub(crate) fn to_py_err(py: Python<'_>, e: Error) -> PyErr {
    let msg = e.to_string();
    let mut file: Option<String> = None;
    let (mut row_group, mut row, mut image_id, mut shard) = (None, None, None, None);
    let err = match &e {
        Error::Corrupt {
            file: f,
            row_group: g,
            image_id: i,
            ..
        } => {
            file = Some(f.clone());
            row_group = Some(*g);
            image_id = i.clone();
            CorruptDataError::new_err(msg)
        }
        Error::Checksum { file: f, .. }
        | Error::NotAnImage { file: f, .. }
        | Error::CorruptLog { file: f, .. }
        | Error::Parquet { file: f, .. }
        | Error::Arrow { file: f, .. }
        | Error::Json { file: f, .. } => {
            file = Some(f.clone());
            CorruptDataError::new_err(msg)
        }
        Error::Schema { location, .. } | Error::InvalidValue { location, .. } => {
            file = Some(location.file.clone());
            row = location.row;
            image_id = location.image_id.clone();
            InvalidDataError::new_err(msg)
        }
        Error::Misaligned {
            location, shard: s, ..
        } => {
            file = Some(location.file.clone());
            row = location.row;
            image_id = location.image_id.clone();
            shard = Some(*s);
            InvalidDataError::new_err(msg)
        }
        Error::InvalidTask { .. } | Error::InvalidTaskName { .. } | Error::InvalidUrl { .. } => {
            InvalidDataError::new_err(msg)
        }
        Error::UnknownShard { shard: s, .. } => {
            shard = Some(*s);
            NotFoundError::new_err(msg)
        }
        Error::NotADataset { .. } | Error::NoSuchVersion { .. } | Error::UnknownTask { .. } => {
            NotFoundError::new_err(msg)
        }
        Error::Conflict { .. }
        | Error::CommitRetriesExhausted { .. }
        | Error::InvalidCommit { .. } => ConflictError::new_err(msg),
        _ => MustError::new_err(msg),
    };
    let v = err.value(py);
    let _ = v.setattr("file", file);
    let _ = v.setattr("row_group", row_group);
    let _ = v.setattr("row", row);
    let _ = v.setattr("image_id", image_id);
    let _ = v.setattr("shard", shard);
    err
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // SAFETY: a plain store into mimalloc's global options.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    m.add_class::<loader::Loader>()?;
    m.add_class::<dataset::Dataset>()?;
    m.add_class::<dataset::LabelWriter>()?;
    m.add_class::<dataset::ArrowBatch>()?;
    m.add_class::<dlpack::Buffer>()?;
    m.add("MustError", py.get_type::<MustError>())?;
    m.add("CorruptDataError", py.get_type::<CorruptDataError>())?;
    m.add("InvalidDataError", py.get_type::<InvalidDataError>())?;
    m.add("ConflictError", py.get_type::<ConflictError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
