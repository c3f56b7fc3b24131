//! Bindings for oxunet_core::resample: one entry point per dtype; the Python wrappers in
//! `oxunet.kernels.resampling` validate the arguments and pick the entry point.

use half::f16;
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn};
use oxunet_core::resample;
use pyo3::prelude::*;

macro_rules! data_fn {
    ($name:ident, $t:ty) => {
        /// resample_data for one dtype (private; call oxunet.kernels.resample_data).
        #[pyfunction]
        #[allow(clippy::too_many_arguments)]
        fn $name<'py>(
            py: Python<'py>,
            data: PyReadonlyArrayDyn<'py, $t>,
            new_shape: Vec<usize>,
            current_spacing: Vec<f64>,
            new_spacing: Vec<f64>,
            order: usize,
            order_z: usize,
            force_separate_z: Option<bool>,
        ) -> PyResult<Bound<'py, PyArrayDyn<$t>>> {
            let view = data.as_array();
            let out = crate::common::run_detached(py, "resample_data", move || {
                resample::resample_data(
                    view,
                    &new_shape,
                    &current_spacing,
                    &new_spacing,
                    order,
                    order_z,
                    force_separate_z,
                )
            })?;
            Ok(out.into_pyarray(py))
        }
    };
}

macro_rules! seg_fn {
    ($name:ident, $t:ty) => {
        /// resample_seg for one dtype (private; call oxunet.kernels.resample_seg).
        #[pyfunction]
        #[allow(clippy::too_many_arguments)]
        fn $name<'py>(
            py: Python<'py>,
            seg: PyReadonlyArrayDyn<'py, $t>,
            new_shape: Vec<usize>,
            current_spacing: Vec<f64>,
            new_spacing: Vec<f64>,
            order: usize,
            order_z: usize,
            force_separate_z: Option<bool>,
        ) -> PyResult<Bound<'py, PyArrayDyn<$t>>> {
            let view = seg.as_array();
            let out = crate::common::run_detached(py, "resample_seg", move || {
                resample::resample_seg(
                    view,
                    &new_shape,
                    &current_spacing,
                    &new_spacing,
                    order,
                    order_z,
                    force_separate_z,
                )
            })?;
            Ok(out.into_pyarray(py))
        }
    };
}

data_fn!(resample_data_f16, f16);
data_fn!(resample_data_f32, f32);
data_fn!(resample_data_f64, f64);
seg_fn!(resample_seg_i8, i8);
seg_fn!(resample_seg_i16, i16);
seg_fn!(resample_seg_i32, i32);
seg_fn!(resample_seg_u8, u8);
seg_fn!(resample_seg_u16, u16);

/// The separate-z decision, exposed for tests and diagnostics.
#[pyfunction]
#[pyo3(signature = (current_spacing, new_spacing, force_separate_z=None))]
fn separate_z_axis(current_spacing: Vec<f64>, new_spacing: Vec<f64>, force_separate_z: Option<bool>) -> Option<usize> {
    resample::separate_z_axis(&current_spacing, &new_spacing, force_separate_z)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(resample_data_f16, m)?)?;
    m.add_function(wrap_pyfunction!(resample_data_f32, m)?)?;
    m.add_function(wrap_pyfunction!(resample_data_f64, m)?)?;
    m.add_function(wrap_pyfunction!(resample_seg_i8, m)?)?;
    m.add_function(wrap_pyfunction!(resample_seg_i16, m)?)?;
    m.add_function(wrap_pyfunction!(resample_seg_i32, m)?)?;
    m.add_function(wrap_pyfunction!(resample_seg_u8, m)?)?;
    m.add_function(wrap_pyfunction!(resample_seg_u16, m)?)?;
    m.add_function(wrap_pyfunction!(separate_z_axis, m)?)?;
    Ok(())
}
