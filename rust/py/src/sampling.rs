//! Bindings for oxunet_core::sampling. Private: `oxunet.kernels.sampling` validates the
//! arguments and calls these.

use numpy::{IntoPyArray, PyArray2, PyReadonlyArrayDyn, PyReadwriteArrayDyn};
use oxunet_core::sampling;
use oxunet_core::KernelError;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// Output size (elements) below which a sequential crop keeps the GIL (releasing it would
/// cost more than the copy).
const INLINE_MAX_ELEMS: usize = 1 << 15;

/// Runs `f` on the calling thread (never in the pool), without the GIL when `release_gil`,
/// mapping errors like `run_detached` does and a panic to RuntimeError.
fn run_here<T: Send>(
    py: Python<'_>,
    what: &'static str,
    release_gil: bool,
    f: impl FnOnce() -> Result<T, KernelError> + Send,
) -> PyResult<T> {
    let caught = if release_gil {
        py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)))
    } else {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
    };
    match caught {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(crate::common::to_pyerr(py, e)),
        Err(panic) => match oxunet_core::mem::payload_to_error(panic) {
            Ok(e) => Err(crate::common::to_pyerr(py, e)),
            Err(detail) => Err(crate::common::internal_error(what, &detail)),
        },
    }
}

/// `classes` arrives flattened: class `c` has labels `labels[offsets[c]..offsets[c + 1]]`.
fn split_classes(labels: &[i64], offsets: &[usize]) -> Result<Vec<Vec<i64>>, KernelError> {
    if offsets.is_empty()
        || offsets[0] != 0
        || *offsets.last().unwrap() != labels.len()
        || offsets.windows(2).any(|w| w[0] > w[1])
    {
        return Err(KernelError::invalid("classes", "inconsistent flattened class offsets"));
    }
    Ok(offsets.windows(2).map(|w| labels[w[0]..w[1]].to_vec()).collect())
}

/// sample_class_locations(seg, labels, offsets, seed, min_num_samples, min_percent_coverage)
/// -> list of (k, seg.ndim) int64 arrays, one per class.
#[pyfunction]
fn sample_class_locations<'py>(
    py: Python<'py>,
    seg: &Bound<'py, PyAny>,
    labels: Vec<i64>,
    offsets: Vec<usize>,
    seed: u64,
    min_num_samples: u64,
    min_percent_coverage: f64,
) -> PyResult<Vec<Bound<'py, PyArray2<i64>>>> {
    let classes = split_classes(&labels, &offsets).map_err(|e| crate::common::to_pyerr(py, e))?;
    macro_rules! run {
        ($($t:ty),*) => {$(
            if let Ok(a) = seg.extract::<PyReadonlyArrayDyn<'py, $t>>() {
                let view = a.as_array();
                let out = crate::common::run_detached(py, "sample_class_locations", move || {
                    sampling::sample_class_locations(view, &classes, seed, min_num_samples, min_percent_coverage)
                })?;
                return Ok(out.into_iter().map(|o| o.into_pyarray(py)).collect());
            }
        )*};
    }
    run!(i8, u8, i16, u16, i32, u32);
    Err(PyTypeError::new_err(
        "seg: dtype is not supported (expected int8, int16, int32, uint8 or uint16)",
    ))
}

/// crop_and_pad(array, lbs, ubs, pad_bits, out): writes the crop into `out`, a C-contiguous
/// array of the crop's shape allocated by the caller (numpy puts large arrays on huge pages).
/// `array` and `out` are unsigned integer arrays of one width (the wrapper passes
/// same-itemsize views of any dtype); `pad_bits` is the pad value's bit pattern in that width.
/// `parallel`: copy with oxunet's pool; otherwise on the calling thread (GIL released for
/// large patches), which is what a loader with many worker processes wants.
#[pyfunction]
fn crop_and_pad<'py>(
    py: Python<'py>,
    array: &Bound<'py, PyAny>,
    lbs: Vec<i64>,
    ubs: Vec<i64>,
    pad_bits: u64,
    out: &Bound<'py, PyAny>,
    parallel: bool,
) -> PyResult<()> {
    if lbs.len() != ubs.len() {
        return Err(crate::common::to_pyerr(
            py,
            KernelError::shape("box", "lower and upper bounds differ in length"),
        ));
    }
    let bbox: Vec<(i64, i64)> = lbs.into_iter().zip(ubs).collect();
    let width = array.getattr(pyo3::intern!(py, "itemsize"))?.extract::<usize>()?;
    macro_rules! run {
        ($($t:ty),*) => {$(
            if width == std::mem::size_of::<$t>() {
                let a = array
                    .extract::<PyReadonlyArrayDyn<'py, $t>>()
                    .map_err(|_| PyTypeError::new_err("array: expected an unsigned integer view (uint8/16/32/64)"))?;
                let mut o = out
                    .extract::<PyReadwriteArrayDyn<'py, $t>>()
                    .map_err(|_| PyTypeError::new_err("out: expected a writable array of the same width as array"))?;
                let view = a.as_array();
                let dst = o
                    .as_slice_mut()
                    .map_err(|_| PyValueError::new_err("out: must be C-contiguous"))?;
                let pad = pad_bits as $t;
                let bb = &bbox;
                if parallel && dst.len() >= INLINE_MAX_ELEMS {
                    return crate::common::run_detached(py, "crop_and_pad", move || {
                        sampling::crop_and_pad_into(view, bb, pad, dst, true)
                    });
                }
                let release = dst.len() >= INLINE_MAX_ELEMS;
                return run_here(py, "crop_and_pad", release, move || {
                    sampling::crop_and_pad_into(view, bb, pad, dst, false)
                });
            }
        )*};
    }
    run!(u8, u16, u32, u64);
    Err(PyTypeError::new_err(
        "array: expected an unsigned integer view (uint8/16/32/64)",
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sample_class_locations, m)?)?;
    m.add_function(wrap_pyfunction!(crop_and_pad, m)?)?;
    Ok(())
}
