//! What every binding shares: the one way long calls leave the GIL, and the mapping of
//! core errors and panics to Python exceptions.

use std::panic::{catch_unwind, AssertUnwindSafe};

use oxunet_core::mem::payload_to_error;
use oxunet_core::{parallel, KernelError};
use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// Raises the Python-side exception class `name` from `oxunet.kernels.errors`
/// (falling back to the builtin base if that module cannot be imported).
fn py_error(py: Python<'_>, name: &str, msg: String, fallback: fn(String) -> PyErr) -> PyErr {
    let cls = py.import("oxunet.kernels.errors").and_then(|m| m.getattr(name));
    match cls {
        Ok(cls) => match cls.call1((msg.clone(),)) {
            Ok(inst) => PyErr::from_value(inst),
            Err(e) => e,
        },
        Err(_) => fallback(msg),
    }
}

pub fn to_pyerr(py: Python<'_>, err: KernelError) -> PyErr {
    match err {
        KernelError::InvalidArgument { .. } => py_error(py, "KernelValueError", err.to_string(), PyValueError::new_err),
        KernelError::Shape { .. } => py_error(py, "KernelShapeError", err.to_string(), PyValueError::new_err),
        KernelError::OutOfMemory { .. } => py_error(py, "KernelMemoryError", err.to_string(), PyMemoryError::new_err),
    }
}

/// Runs `f` without the GIL, inside oxunet's thread pool, turning a core error into the
/// matching Python exception and a panic into a RuntimeError (a panic must never reach
/// Python as PanicException, which `except Exception` does not catch).
pub fn run_detached<T, F>(py: Python<'_>, what: &'static str, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> Result<T, KernelError> + Send,
{
    let out = py.detach(|| parallel::install(|| catch_unwind(AssertUnwindSafe(f))));
    match out {
        Err(e) => Err(to_pyerr(py, e)),
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e))) => Err(to_pyerr(py, e)),
        Ok(Err(panic)) => match payload_to_error(panic) {
            // a fallible allocation deep inside the kernel unwound with its error
            Ok(e) => Err(to_pyerr(py, e)),
            Err(detail) => Err(internal_error(what, &detail)),
        },
    }
}

/// A panic that is not one of ours: a RuntimeError (never PanicException, a BaseException).
pub fn internal_error(what: &str, detail: &str) -> PyErr {
    PyRuntimeError::new_err(format!(
        "internal error in oxunet kernel {what}: {detail} (this is a bug, please report it)"
    ))
}
