//! Bindings for `oxunet_core::crop`: `crop_to_nonzero(data, seg, nonzero_label)`.
//!
//! Outputs are allocated by numpy (its allocator asks for huge pages on large arrays) between
//! the steps (box, copy + fill, seg), all of which run without the GIL.

use half::f16;
use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use oxunet_core::components::LabelValue;
use oxunet_core::crop::{crop_box, crop_data_into, crop_seg_into, new_seg_into, CropBox, CropPlan, NonzeroValue};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::common::run_detached;

type Bbox = Vec<Vec<usize>>;

fn cropped_dims(channels: usize, crop: &CropBox) -> Vec<usize> {
    let mut d = vec![channels];
    d.extend(crop.cropped_shape());
    d
}

fn crop_seg<'py, S: LabelValue + Element>(
    py: Python<'py>,
    seg: &Bound<'py, PyArrayDyn<S>>,
    plan: &CropPlan,
    nonzero_label: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let ro = seg.readonly();
    let view = ro.as_array();
    // SAFETY: `crop_seg_into` writes every element before the array is handed out.
    let out = unsafe { PyArrayDyn::<S>::new(py, cropped_dims(seg.shape()[0], &plan.crop), false) };
    {
        let mut rw = out.readwrite();
        let ov = rw.as_array_mut();
        run_detached(py, "crop_to_nonzero", move || {
            crop_seg_into(view, plan, nonzero_label, ov)
        })?;
    }
    Ok(out.into_any())
}

fn crop_typed<'py, F: NonzeroValue + Element>(
    py: Python<'py>,
    data: &Bound<'py, PyArrayDyn<F>>,
    seg: Option<&Bound<'py, PyAny>>,
    nonzero_label: i64,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, Bbox)> {
    let ro = data.readonly();
    let view = ro.as_array();
    let crop = {
        let v = view.view();
        run_detached(py, "crop_to_nonzero", move || crop_box(v))?
    };
    // SAFETY: `crop_data_into` writes every element before the array is handed out.
    let out = unsafe { PyArrayDyn::<F>::new(py, cropped_dims(data.shape()[0], &crop), false) };
    let plan = {
        let mut rw = out.readwrite();
        let ov = rw.as_array_mut();
        let c = &crop;
        run_detached(py, "crop_to_nonzero", move || crop_data_into(view, c, ov))?
    };
    let seg_out = match seg {
        None => {
            // SAFETY: `new_seg_into` writes every element.
            let s = unsafe { PyArrayDyn::<i8>::new(py, cropped_dims(1, &crop), false) };
            {
                let mut rw = s.readwrite();
                let ov = rw.as_array_mut();
                let p = &plan;
                run_detached(py, "crop_to_nonzero", move || new_seg_into(p, nonzero_label, ov))?;
            }
            s.into_any()
        }
        Some(s) => {
            macro_rules! try_seg {
                ($($t:ty),*) => {$(
                    if let Ok(a) = s.cast::<PyArrayDyn<$t>>() {
                        return Ok((out.into_any(), crop_seg(py, a, &plan, nonzero_label)?, bbox(&plan)));
                    }
                )*};
            }
            try_seg!(i8, i16, i32, i64, u8, u16, u32, u64);
            return Err(PyTypeError::new_err("seg: expected an integer numpy array"));
        }
    };
    Ok((out.into_any(), seg_out, bbox(&plan)))
}

fn bbox(plan: &CropPlan) -> Bbox {
    plan.crop.bbox().iter().map(|b| vec![b[0], b[1]]).collect()
}

/// `(data_cropped, seg_cropped, bbox)`; arguments are validated by `oxunet.kernels.cropping`.
#[pyfunction]
#[pyo3(signature = (data, seg, nonzero_label))]
fn crop_to_nonzero<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    seg: Option<&Bound<'py, PyAny>>,
    nonzero_label: i64,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, Bbox)> {
    if let Ok(a) = data.cast::<PyArrayDyn<f32>>() {
        return crop_typed(py, a, seg, nonzero_label);
    }
    if let Ok(a) = data.cast::<PyArrayDyn<f64>>() {
        return crop_typed(py, a, seg, nonzero_label);
    }
    if let Ok(a) = data.cast::<PyArrayDyn<f16>>() {
        return crop_typed(py, a, seg, nonzero_label);
    }
    Err(PyTypeError::new_err(
        "data: expected a float16, float32 or float64 numpy array",
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(crop_to_nonzero, m)?)?;
    Ok(())
}
