//! Crop a half-open box out of an array, padding what lies outside it with a constant
//! (the semantics of `acvl_utils.crop_and_pad_nd` with `pad_mode='constant'`).
//!
//! Only the part of the source inside the box is read, row by row along the last axis
//! (a `memcpy` per row when that axis is contiguous), so cropping a patch out of a
//! memory-mapped volume touches only the pages of the patch. The output is written
//! exactly once (allocated uninitialised), in parallel over rows for large patches.

use std::mem::MaybeUninit;

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

use crate::mem::SendPtr;
use crate::{KernelError, KernelResult};

/// Output elements below which the copy stays on one thread even when parallel.
const PARALLEL_MIN_ELEMS: usize = 1 << 16;

/// Crops `src` to `bbox` (`[lb, ub)` pairs for the trailing `bbox.len()` axes; leading axes
/// are kept whole), filling the part of the box outside `src` with `pad`.
pub fn crop_and_pad<T: Copy + Send + Sync>(
    src: ArrayViewD<'_, T>,
    bbox: &[(i64, i64)],
    pad: T,
) -> KernelResult<ArrayD<T>> {
    let out_shape = crop_shape(&src, bbox)?;
    let mut out = ArrayD::<T>::uninit(IxDyn(&out_shape));
    fill(
        &src,
        bbox,
        pad,
        &out_shape,
        out.as_slice_mut().expect("fresh array is contiguous"),
        true,
    );
    // SAFETY: `fill` writes every element of the output.
    Ok(unsafe { out.assume_init() })
}

/// Like [`crop_and_pad`], writing into `out` (C order, `crop_shape(src, bbox)` elements),
/// e.g. a buffer allocated by the caller (numpy allocates large arrays on huge pages).
///
/// `parallel = false` copies on the calling thread only: a patch copy is memory-bound, and in
/// a data loader running many worker processes a hand-off to pool threads (which must first
/// be scheduled) costs more than a second thread can gain.
pub fn crop_and_pad_into<T: Copy + Send + Sync>(
    src: ArrayViewD<'_, T>,
    bbox: &[(i64, i64)],
    pad: T,
    out: &mut [T],
    parallel: bool,
) -> KernelResult<()> {
    let out_shape = crop_shape(&src, bbox)?;
    let total: usize = out_shape.iter().product();
    if out.len() != total {
        return Err(KernelError::shape(
            "out",
            format!("has {} elements, the crop needs {total} ({out_shape:?})", out.len()),
        ));
    }
    // SAFETY: `MaybeUninit<T>` has the layout of `T`, and `fill` only writes initialised values.
    let out = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut MaybeUninit<T>, out.len()) };
    fill(&src, bbox, pad, &out_shape, out, parallel);
    Ok(())
}

/// Output shape of a crop: leading axes kept, then `ub - lb` per box axis.
pub fn crop_shape<T>(src: &ArrayViewD<'_, T>, bbox: &[(i64, i64)]) -> KernelResult<Vec<usize>> {
    let nd = src.ndim();
    if nd == 0 {
        return Err(KernelError::shape(
            "array",
            "expected at least 1 dimension, got a 0-d array",
        ));
    }
    if bbox.len() > nd {
        return Err(KernelError::shape(
            "box",
            format!("has {} axes but the array only has {} dimensions", bbox.len(), nd),
        ));
    }
    let lead = nd - bbox.len();
    let mut out_shape = vec![0usize; nd];
    for a in 0..nd {
        if a < lead {
            out_shape[a] = src.shape()[a];
        } else {
            let (lb, ub) = bbox[a - lead];
            if ub < lb {
                return Err(KernelError::invalid(
                    "box",
                    format!("axis {}: upper bound {ub} < lower bound {lb}", a - lead),
                ));
            }
            out_shape[a] = usize::try_from(ub - lb).map_err(|_| {
                KernelError::invalid("box", format!("axis {}: extent {} is too large", a - lead, ub - lb))
            })?;
        }
    }
    Ok(out_shape)
}

/// Writes the crop (shape `out_shape`, C order) into `out`, every element exactly once.
fn fill<T: Copy + Send + Sync>(
    src: &ArrayViewD<'_, T>,
    bbox: &[(i64, i64)],
    pad: T,
    out_shape: &[usize],
    out_slice: &mut [MaybeUninit<T>],
    parallel: bool,
) {
    let nd = src.ndim();
    let lead = nd - bbox.len();
    let mut lower = vec![0i64; nd];
    for (a, &(lb, _)) in bbox.iter().enumerate() {
        lower[lead + a] = lb;
    }
    let src_shape: Vec<i64> = src.shape().iter().map(|&s| s as i64).collect();
    let strides: Vec<isize> = src.strides().to_vec();

    let total: usize = out_shape.iter().product();
    debug_assert_eq!(out_slice.len(), total);
    if total == 0 {
        return;
    }
    let row_len = out_shape[nd - 1];
    let n_rows = total / row_len;
    let outer_shape = &out_shape[..nd - 1];

    // Last axis: [0, pre) pad, [pre, pre + valid) copied from source index `first`, rest pad.
    let l = nd - 1;
    let first = lower[l].max(0);
    let end = (lower[l] + row_len as i64).min(src_shape[l]);
    let (pre, valid) = if end > first {
        ((first - lower[l]) as usize, (end - first) as usize)
    } else {
        (row_len, 0)
    };
    let stride_l = strides[l];
    // the source is only read, by every thread
    let base_ptr = SendPtr::from_const(src.as_ptr());

    let fill_rows = |first_row: usize, rows: &mut [MaybeUninit<T>]| {
        // Odometer over the outer output axes, starting at `first_row`.
        let mut idx = vec![0usize; nd - 1];
        let mut r = first_row;
        for a in (0..nd - 1).rev() {
            idx[a] = r % outer_shape[a];
            r /= outer_shape[a];
        }
        let base = base_ptr;
        for row in rows.chunks_exact_mut(row_len) {
            // Source offset of this row's element at last-axis index 0, if the row is inside.
            let mut offset: isize = 0;
            let mut inside = valid > 0;
            for a in 0..nd - 1 {
                let s = idx[a] as i64 + lower[a];
                if s < 0 || s >= src_shape[a] {
                    inside = false;
                    break;
                }
                offset += s as isize * strides[a];
            }
            if inside {
                for v in &mut row[..pre] {
                    v.write(pad);
                }
                let dst = &mut row[pre..pre + valid];
                // SAFETY: every index (s_0, .., s_{nd-2}, first + j) with j < valid lies inside
                // `src` (checked above), so the pointer arithmetic stays within its allocation.
                unsafe {
                    let p = base.as_const().offset(offset + first as isize * stride_l);
                    if stride_l == 1 {
                        std::ptr::copy_nonoverlapping(p, dst.as_mut_ptr() as *mut T, valid);
                    } else {
                        for (j, v) in dst.iter_mut().enumerate() {
                            v.write(*p.offset(j as isize * stride_l));
                        }
                    }
                }
                for v in &mut row[pre + valid..] {
                    v.write(pad);
                }
            } else {
                for v in row.iter_mut() {
                    v.write(pad);
                }
            }
            // advance the odometer
            for a in (0..nd - 1).rev() {
                idx[a] += 1;
                if idx[a] < outer_shape[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
    };

    if !parallel || total < PARALLEL_MIN_ELEMS || n_rows == 1 {
        fill_rows(0, out_slice);
    } else {
        let tasks = (rayon::current_num_threads() * 8).min(n_rows).max(1);
        let rows_per_task = n_rows.div_ceil(tasks);
        out_slice
            .par_chunks_mut(rows_per_task * row_len)
            .enumerate()
            .for_each(|(t, chunk)| fill_rows(t * rows_per_task, chunk));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array};

    /// Naive oracle: element by element.
    fn naive(src: &ArrayD<i32>, bbox: &[(i64, i64)], pad: i32) -> ArrayD<i32> {
        let nd = src.ndim();
        let lead = nd - bbox.len();
        let shape: Vec<usize> = (0..nd)
            .map(|a| {
                if a < lead {
                    src.shape()[a]
                } else {
                    (bbox[a - lead].1 - bbox[a - lead].0) as usize
                }
            })
            .collect();
        ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
            let mut sidx = Vec::with_capacity(nd);
            for a in 0..nd {
                let s = ix[a] as i64 + if a < lead { 0 } else { bbox[a - lead].0 };
                if s < 0 || s >= src.shape()[a] as i64 {
                    return pad;
                }
                sidx.push(s as usize);
            }
            src[IxDyn(&sidx)]
        })
    }

    #[test]
    fn matches_naive_inside_partial_outside() {
        let src =
            Array::from_shape_fn((2, 9, 7, 11), |(c, x, y, z)| (c * 1000 + x * 100 + y * 10 + z) as i32).into_dyn();
        let boxes: Vec<Vec<(i64, i64)>> = vec![
            vec![(1, 5), (2, 6), (3, 10)],
            vec![(-3, 4), (5, 12), (-2, 13)],
            vec![(20, 25), (0, 3), (0, 3)],
            vec![(-5, -1), (0, 3), (0, 3)],
            vec![(0, 9), (0, 7), (0, 11)],
            vec![(2, 2), (0, 7), (0, 11)],
            vec![(0, 3), (-1, 2)],
            vec![(-1, 1)],
            vec![],
            vec![(0, 1), (0, 2), (-4, 20), (3, 4)],
        ];
        for b in &boxes {
            let got = crop_and_pad(src.view(), b, -1).unwrap();
            assert_eq!(got, naive(&src, b, -1), "box {b:?}");
        }
        // large enough to go parallel
        let big = Array::from_shape_fn((1, 40, 50, 60), |(_, x, y, z)| (x * 10000 + y * 100 + z) as i32).into_dyn();
        let b = vec![(-7, 33), (10, 70), (-3, 57)];
        assert_eq!(crop_and_pad(big.view(), &b, 5).unwrap(), naive(&big, &b, 5));
    }

    #[test]
    fn strided_and_negative_stride_sources() {
        let src = Array::from_shape_fn((9, 8, 7), |(x, y, z)| (x * 100 + y * 10 + z) as i32);
        let v = src.slice(s![..;2, ..;-1, ..;3]).to_owned().into_dyn();
        let view = src.slice(s![..;2, ..;-1, ..;3]).into_dyn();
        let b = vec![(-1, 4), (2, 9), (-1, 2)];
        assert_eq!(crop_and_pad(view, &b, 0).unwrap(), naive(&v, &b, 0));
        let t = src.t().into_dyn();
        let b = vec![(1, 6), (-2, 5), (3, 12)];
        assert_eq!(
            crop_and_pad(t, &b, 0).unwrap(),
            naive(&src.t().to_owned().into_dyn(), &b, 0)
        );
    }

    #[test]
    fn into_matches_allocating_and_checks_length() {
        let src = Array::from_shape_fn((3, 10, 12), |(c, y, x)| (c * 1000 + y * 20 + x) as i32).into_dyn();
        let b = vec![(-2, 6), (5, 15)];
        let want = crop_and_pad(src.view(), &b, -7).unwrap();
        let mut buf = vec![0i32; 3 * 8 * 10];
        crop_and_pad_into(src.view(), &b, -7, &mut buf, false).unwrap();
        assert_eq!(buf, want.iter().copied().collect::<Vec<_>>());
        let big = Array::from_shape_fn((2, 60, 70, 80), |(c, x, y, z)| (c + x * 7 + y * 11 + z * 13) as i32).into_dyn();
        let b = vec![(-5, 55), (10, 80), (-3, 77)];
        let want = crop_and_pad(big.view(), &b, 9).unwrap();
        for parallel in [false, true] {
            let mut buf = vec![0i32; want.len()];
            crop_and_pad_into(big.view(), &b, 9, &mut buf, parallel).unwrap();
            assert_eq!(buf, want.iter().copied().collect::<Vec<_>>());
        }
        let mut short = vec![0i32; 5];
        assert!(matches!(
            crop_and_pad_into(src.view(), &b, 0, &mut short, false),
            Err(KernelError::Shape { arg: "out", .. })
        ));
    }

    #[test]
    fn bad_arguments() {
        let src = ArrayD::<i32>::zeros(IxDyn(&[3, 3]));
        assert!(matches!(
            crop_and_pad(src.view(), &[(0, 1), (0, 1), (0, 1)], 0),
            Err(KernelError::Shape { arg: "box", .. })
        ));
        assert!(matches!(
            crop_and_pad(src.view(), &[(2, 1)], 0),
            Err(KernelError::InvalidArgument { arg: "box", .. })
        ));
    }
}
