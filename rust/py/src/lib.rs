//! `oxunet._core`: thin PyO3 bindings over `oxunet-core`. Argument checking that needs
//! Python types lives in `oxunet.kernels`; everything here converts, detaches and calls.

use pyo3::prelude::*;

mod common;
mod components;
mod crop;
mod resample;
mod sampling;
mod sliding_window;

#[pyfunction]
fn set_num_threads(py: Python<'_>, n: usize) -> PyResult<()> {
    oxunet_core::parallel::set_num_threads(n).map_err(|e| common::to_pyerr(py, e))
}

#[pyfunction]
fn get_num_threads() -> usize {
    oxunet_core::parallel::num_threads()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_THREADS", oxunet_core::parallel::MAX_THREADS)?;
    m.add(
        "build_profile",
        if cfg!(debug_assertions) { "debug" } else { "release" },
    )?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    components::register(m)?;
    crop::register(m)?;
    resample::register(m)?;
    sampling::register(m)?;
    sliding_window::register(m)?;
    Ok(())
}
