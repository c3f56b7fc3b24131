//! Bindings for `oxunet_core::components`: `label_components` and `filter_components`
//! (the engine of `remove_all_but_largest_component` and `remove_small_components`).

use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use oxunet_core::components::{
    filter_components_into, label_components_into, Connectivity, Keep, LabelValue, MaskValue,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::common::run_detached;

fn label_typed<'py, T: MaskValue + Element>(
    py: Python<'py>,
    mask: &Bound<'py, PyArrayDyn<T>>,
    connectivity: Connectivity,
) -> PyResult<(Bound<'py, PyAny>, u32)> {
    let ro = mask.readonly();
    let view = ro.as_array();
    // SAFETY: `label_components_into` writes every element before the array is handed out.
    let out = unsafe { PyArrayDyn::<u32>::new(py, mask.shape().to_vec(), false) };
    let n = {
        let mut rw = out.readwrite();
        let ov = rw.as_array_mut();
        run_detached(py, "label_components", move || {
            label_components_into(view, connectivity, ov)
        })?
    };
    Ok((out.into_any(), n))
}

/// `(labels uint32, n)`; `connectivity` is a neighbour count (4/8 in 2D, 6/18/26 in 3D).
#[pyfunction]
#[pyo3(signature = (mask, connectivity))]
fn label_components<'py>(
    py: Python<'py>,
    mask: &Bound<'py, PyAny>,
    connectivity: usize,
) -> PyResult<(Bound<'py, PyAny>, u32)> {
    let ndim = mask.getattr("ndim")?.extract::<usize>()?;
    let conn = Connectivity::from_neighbours(ndim, connectivity).map_err(|e| crate::common::to_pyerr(py, e))?;
    macro_rules! try_mask {
        ($($t:ty),*) => {$(
            if let Ok(a) = mask.cast::<PyArrayDyn<$t>>() {
                return label_typed(py, a, conn);
            }
        )*};
    }
    try_mask!(bool, u8, i8, i16, i32, i64, u16, u32, u64);
    Err(PyTypeError::new_err("mask: expected a bool or integer numpy array"))
}

fn filter_typed<'py, T: LabelValue + Element>(
    py: Python<'py>,
    seg: &Bound<'py, PyArrayDyn<T>>,
    labels: Vec<i64>,
    keep: Keep,
    replace_with: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let ro = seg.readonly();
    let view = ro.as_array();
    // SAFETY: `filter_components_into` writes every element (a copy of seg) before returning Ok.
    let out = unsafe { PyArrayDyn::<T>::new(py, seg.shape().to_vec(), false) };
    {
        let mut rw = out.readwrite();
        let ov = rw.as_array_mut();
        run_detached(py, "filter_components", move || {
            filter_components_into(view, &labels, keep, replace_with, ov)
        })?;
    }
    Ok(out.into_any())
}

/// Copy of `seg` where the components (full connectivity) of the mask `seg in labels` that are
/// not kept are set to `replace_with`: with `min_size=None` all but the largest (ties kept),
/// else those smaller than `min_size`.
#[pyfunction]
#[pyo3(signature = (seg, labels, min_size, replace_with))]
fn filter_components<'py>(
    py: Python<'py>,
    seg: &Bound<'py, PyAny>,
    labels: Vec<i64>,
    min_size: Option<u64>,
    replace_with: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let keep = match min_size {
        None => Keep::Largest,
        Some(m) => Keep::AtLeast(m),
    };
    macro_rules! try_seg {
        ($($t:ty),*) => {$(
            if let Ok(a) = seg.cast::<PyArrayDyn<$t>>() {
                return filter_typed(py, a, labels, keep, replace_with);
            }
        )*};
    }
    try_seg!(u8, i8, i16, i32, u16, i64, u32, u64);
    Err(PyTypeError::new_err("seg: expected an integer numpy array"))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(label_components, m)?)?;
    m.add_function(wrap_pyfunction!(filter_components, m)?)?;
    Ok(())
}
