//! Bindings for oxunet_core::resample: one entry point per dtype; the Python wrappers in
//! `oxunet.kernels.resampling` validate the arguments and pick the entry point.

use half::f16;
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn};
use oxunet_core::resample;
use pyo3::prelude::*;

macro_rules! resample_fn {
    ($name:ident, $t:ty, $core:ident) => {
        /// One dtype of resample_data / resample_seg (private; call the oxunet.kernels wrapper).
        #[pyfunction]
        #[allow(clippy::too_many_arguments)]
        fn $name<'py>(
            py: Python<'py>,
            array: PyReadonlyArrayDyn<'py, $t>,
            new_shape: Vec<usize>,
            current_spacing: Vec<f64>,
            new_spacing: Vec<f64>,
            order: usize,
            order_z: usize,
            force_separate_z: Option<bool>,
        ) -> PyResult<Bound<'py, PyArrayDyn<$t>>> {
            let view = array.as_array();
            let out = crate::common::run_detached(py, stringify!($core), move || {
                resample::$core(
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

resample_fn!(resample_data_f16, f16, resample_data);
resample_fn!(resample_data_f32, f32, resample_data);
resample_fn!(resample_data_f64, f64, resample_data);
resample_fn!(resample_seg_i8, i8, resample_seg);
resample_fn!(resample_seg_i16, i16, resample_seg);
resample_fn!(resample_seg_i32, i32, resample_seg);
resample_fn!(resample_seg_u8, u8, resample_seg);
resample_fn!(resample_seg_u16, u16, resample_seg);

macro_rules! band_fn {
    ($name:ident, $t:ty) => {
        /// One dtype of resample_data_band (private; call the oxunet.kernels wrapper).
        #[pyfunction]
        #[allow(clippy::too_many_arguments)]
        fn $name<'py>(
            py: Python<'py>,
            band: PyReadonlyArrayDyn<'py, $t>,
            first_plane: usize,
            depth: usize,
            planes: (usize, usize),
            new_shape: Vec<usize>,
            current_spacing: Vec<f64>,
            new_spacing: Vec<f64>,
            order: usize,
            order_z: usize,
            force_separate_z: Option<bool>,
        ) -> PyResult<Bound<'py, PyArrayDyn<$t>>> {
            let view = band.as_array();
            let out = crate::common::run_detached(py, "resample_data_band", move || {
                resample::resample_data_band(
                    view,
                    first_plane,
                    depth,
                    planes,
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

band_fn!(resample_data_band_f16, f16);
band_fn!(resample_data_band_f32, f32);
band_fn!(resample_data_band_f64, f64);

/// Per output plane along axis 0, (first, last) input plane; None with the reason when bands are not exact.
type Dependencies = (Option<Vec<(usize, usize)>>, String);

/// Per output plane along axis 0, the (first, last) input plane it reads when bands resample
/// exactly; else the reason they do not (private; call the oxunet.kernels wrapper).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn band_dependencies(
    py: Python<'_>,
    in_shape: Vec<usize>,
    new_shape: Vec<usize>,
    current_spacing: Vec<f64>,
    new_spacing: Vec<f64>,
    order: usize,
    order_z: usize,
    force_separate_z: Option<bool>,
) -> PyResult<Dependencies> {
    let r = crate::common::run_detached(py, "band_dependencies", move || {
        resample::band_dependencies(
            &in_shape,
            &new_shape,
            &current_spacing,
            &new_spacing,
            order,
            order_z,
            force_separate_z,
        )
    })?;
    Ok(match r {
        Ok(deps) => (Some(deps), String::new()),
        Err(why) => (None, why),
    })
}

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
    m.add_function(wrap_pyfunction!(resample_data_band_f16, m)?)?;
    m.add_function(wrap_pyfunction!(resample_data_band_f32, m)?)?;
    m.add_function(wrap_pyfunction!(resample_data_band_f64, m)?)?;
    m.add_function(wrap_pyfunction!(band_dependencies, m)?)?;
    Ok(())
}
