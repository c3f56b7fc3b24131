//! What every binding shares: the one way long calls leave the GIL, and the mapping of
//! core errors and panics to Python exceptions.

use std::panic::{catch_unwind, AssertUnwindSafe};

use oxunet_core::{parallel, KernelError};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

/// Raises the Python-side exception class `name` from `oxunet.kernels.errors`
/// (falling back to the builtin base if that module cannot be imported).
fn py_error(py: Python<'_>, name: &str, msg: String, fallback_type: bool) -> PyErr {
    let cls = py
        .import("oxunet.kernels.errors")
        .and_then(|m| m.getattr(name));
    match cls {
        Ok(cls) => match cls.call1((msg.clone(),)) {
            Ok(inst) => PyErr::from_value(inst),
            Err(e) => e,
        },
        Err(_) if fallback_type => PyTypeError::new_err(msg),
        Err(_) => PyValueError::new_err(msg),
    }
}

pub fn to_pyerr(py: Python<'_>, err: KernelError) -> PyErr {
    match err {
        KernelError::InvalidArgument { .. } => py_error(py, "KernelValueError", err.to_string(), false),
        KernelError::Shape { .. } => py_error(py, "KernelShapeError", err.to_string(), false),
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
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_pyerr(py, e)),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(PyRuntimeError::new_err(format!(
                "internal error in oxunet kernel {what}: {detail} (this is a bug, please report it)"
            )))
        }
    }
}
