//! Bindings for oxunet_core::sliding_window: window starts, the Gaussian importance map and
//! the Aggregator (a frozen pyclass: every method takes `&self`, the core does its own
//! locking, so several Python threads may call it at once).

use half::f16;
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn};
use oxunet_core::sliding_window as sw;
use oxunet_core::KernelError;
use pyo3::prelude::*;

use crate::common::{run_detached, to_pyerr};

#[pyfunction]
fn sliding_window_starts(
    py: Python<'_>,
    image_size: Vec<usize>,
    patch_size: Vec<usize>,
    step_size: f64,
) -> PyResult<Vec<Vec<usize>>> {
    sw::sliding_window_starts(&image_size, &patch_size, step_size).map_err(|e| to_pyerr(py, e))
}

#[pyfunction]
fn gaussian_importance_map_f32<'py>(
    py: Python<'py>,
    patch_size: Vec<usize>,
    sigma_scale: f64,
    value_scaling_factor: f64,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let map = run_detached(py, "gaussian_importance_map", move || {
        sw::gaussian_importance_map::<f32>(&patch_size, sigma_scale, value_scaling_factor)
    })?;
    Ok(map.into_pyarray(py))
}

#[pyfunction]
fn gaussian_importance_map_f16<'py>(
    py: Python<'py>,
    patch_size: Vec<usize>,
    sigma_scale: f64,
    value_scaling_factor: f64,
) -> PyResult<Bound<'py, PyArrayDyn<f16>>> {
    let map = run_detached(py, "gaussian_importance_map", move || {
        sw::gaussian_importance_map::<f16>(&patch_size, sigma_scale, value_scaling_factor)
    })?;
    Ok(map.into_pyarray(py))
}

fn pick<T: Copy>(arg: &'static str, value: &str, choices: &[(&str, T)]) -> Result<T, KernelError> {
    choices
        .iter()
        .find(|(n, _)| *n == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            KernelError::invalid(arg, format!("expected one of {names:?}, got {value:?}"))
        })
}

fn slab_to_py(py: Python<'_>, data: sw::SlabData) -> Py<PyAny> {
    match data {
        sw::SlabData::Logits(a) => a.into_pyarray(py).into_any().unbind(),
        sw::SlabData::LabelsU8(a) => a.into_pyarray(py).into_any().unbind(),
        sw::SlabData::LabelsU16(a) => a.into_pyarray(py).into_any().unbind(),
    }
}

#[pyclass(frozen, name = "Aggregator", module = "oxunet._core")]
struct PyAggregator {
    inner: sw::Aggregator,
}

#[pymethods]
impl PyAggregator {
    #[new]
    #[pyo3(signature = (num_channels, shape, patch_size, weighting, dtype, streaming, output, uncovered, sigma_scale, value_scaling_factor))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        num_channels: usize,
        shape: Vec<usize>,
        patch_size: Vec<usize>,
        weighting: &str,
        dtype: &str,
        streaming: bool,
        output: &str,
        uncovered: &str,
        sigma_scale: f64,
        value_scaling_factor: f64,
    ) -> PyResult<Self> {
        let build = || -> Result<sw::Aggregator, KernelError> {
            let mut cfg = sw::AggregatorConfig::new(num_channels, &shape, &patch_size);
            cfg.weighting = pick(
                "weighting",
                weighting,
                &[
                    ("gaussian", sw::Weighting::Gaussian),
                    ("constant", sw::Weighting::Constant),
                ],
            )?;
            cfg.dtype = pick(
                "dtype",
                dtype,
                &[("float32", sw::AccDtype::F32), ("float16", sw::AccDtype::F16)],
            )?;
            cfg.output = pick(
                "output",
                output,
                &[("logits", sw::Output::Logits), ("labels", sw::Output::Labels)],
            )?;
            cfg.uncovered = pick(
                "uncovered",
                uncovered,
                &[("error", sw::Uncovered::Error), ("zero", sw::Uncovered::Zero)],
            )?;
            cfg.streaming = streaming;
            cfg.sigma_scale = sigma_scale;
            cfg.value_scaling_factor = value_scaling_factor;
            sw::Aggregator::new(cfg)
        };
        let inner = run_detached(py, "Aggregator", build)?;
        Ok(PyAggregator { inner })
    }

    fn add_f32(&self, py: Python<'_>, prediction: PyReadonlyArrayDyn<'_, f32>, start: Vec<isize>) -> PyResult<()> {
        let view = prediction.as_array();
        let inner = &self.inner;
        run_detached(py, "Aggregator.add", move || {
            inner.add(sw::Prediction::F32(view), &start)
        })
    }

    fn add_f16(&self, py: Python<'_>, prediction: PyReadonlyArrayDyn<'_, f16>, start: Vec<isize>) -> PyResult<()> {
        let view = prediction.as_array();
        let inner = &self.inner;
        run_detached(py, "Aggregator.add", move || {
            inner.add(sw::Prediction::F16(view), &start)
        })
    }

    /// bfloat16 predictions as their raw bits (int16 view).
    fn add_bf16(&self, py: Python<'_>, prediction: PyReadonlyArrayDyn<'_, i16>, start: Vec<isize>) -> PyResult<()> {
        let view = prediction.as_array();
        let inner = &self.inner;
        run_detached(py, "Aggregator.add", move || {
            inner.add(sw::Prediction::Bf16Bits(view), &start)
        })
    }

    fn finalize<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let inner = &self.inner;
        let out = run_detached(py, "Aggregator.finalize", move || inner.finalize())?;
        Ok(out.into_pyarray(py))
    }

    fn argmax(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let inner = &self.inner;
        let out = run_detached(py, "Aggregator.argmax", move || inner.argmax())?;
        Ok(slab_to_py(py, out))
    }

    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let inner = &self.inner;
        run_detached(py, "Aggregator.flush", move || inner.flush())
    }

    fn pop_ready(&self, py: Python<'_>) -> PyResult<Vec<(usize, usize, Py<PyAny>)>> {
        let slabs = self.inner.pop_ready().map_err(|e| to_pyerr(py, e))?;
        Ok(slabs
            .into_iter()
            .map(|s| (s.start, s.stop, slab_to_py(py, s.data)))
            .collect())
    }

    fn importance_map<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let map = self.inner.importance_map().map_err(|e| to_pyerr(py, e))?;
        Ok(map.into_pyarray(py))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sliding_window_starts, m)?)?;
    m.add_function(wrap_pyfunction!(gaussian_importance_map_f32, m)?)?;
    m.add_function(wrap_pyfunction!(gaussian_importance_map_f16, m)?)?;
    m.add_class::<PyAggregator>()?;
    Ok(())
}
