//! The separable machinery: one axis pass over a 3-D volume (lines of the axis processed
//! `LANES` at a time in f64 scratch), chains of passes, min/max scans and nearest gathers.

use std::marker::PhantomData;

use ndarray::ArrayView3;
use rayon::prelude::*;

use super::plan::AxisPlan;

/// Lines processed together in one scratch block (vectorised across lanes).
pub(crate) const LANES: usize = 16;

/// A floating point element the data path reads and writes.
pub trait Sample: Copy + Default + Send + Sync + 'static {
    /// Storage of intermediate results between axis passes: f32 for f16/f32, f64 for f64.
    type Work: Sample;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

impl Sample for f32 {
    type Work = f32;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Sample for f64 {
    type Work = f64;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
}

impl Sample for half::f16 {
    type Work = f32;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        half::f16::from_f64(v)
    }
}

/// Raw, strided, read-only access to a 3-D volume that may be shared across threads.
#[derive(Clone, Copy)]
pub(crate) struct Vol<'a, T> {
    ptr: *const T,
    pub dims: [usize; 3],
    pub strides: [isize; 3],
    _life: PhantomData<&'a T>,
}

unsafe impl<T: Sync> Send for Vol<'_, T> {}
unsafe impl<T: Sync> Sync for Vol<'_, T> {}

impl<'a, T: Copy> Vol<'a, T> {
    pub fn from_view(v: &ArrayView3<'a, T>) -> Self {
        let s = v.strides();
        Vol { ptr: v.as_ptr(), dims: [v.dim().0, v.dim().1, v.dim().2], strides: [s[0], s[1], s[2]], _life: PhantomData }
    }

    pub fn from_slice(data: &'a [T], dims: [usize; 3]) -> Self {
        assert_eq!(data.len(), dims.iter().product::<usize>());
        let strides = [(dims[1] * dims[2]) as isize, dims[2] as isize, 1];
        Vol { ptr: data.as_ptr(), dims, strides, _life: PhantomData }
    }

    /// # Safety
    /// `off` must be the offset of an element of the volume.
    #[inline(always)]
    pub unsafe fn at(&self, off: isize) -> T {
        *self.ptr.offset(off)
    }

    #[inline(always)]
    pub fn offset(&self, i: [usize; 3]) -> isize {
        i[0] as isize * self.strides[0] + i[1] as isize * self.strides[1] + i[2] as isize * self.strides[2]
    }

    #[inline(always)]
    pub fn get(&self, i: [usize; 3]) -> T {
        debug_assert!(i[0] < self.dims[0] && i[1] < self.dims[1] && i[2] < self.dims[2]);
        unsafe { self.at(self.offset(i)) }
    }
}

/// What an axis pass reads: values of a volume as f64.
pub(crate) trait Source: Sync {
    fn dims(&self) -> [usize; 3];
    fn strides(&self) -> [isize; 3];
    /// # Safety
    /// `off` must be the offset of an element.
    unsafe fn load(&self, off: isize) -> f64;
}

impl<T: Sample> Source for Vol<'_, T> {
    fn dims(&self) -> [usize; 3] {
        self.dims
    }
    fn strides(&self) -> [isize; 3] {
        self.strides
    }
    #[inline(always)]
    unsafe fn load(&self, off: isize) -> f64 {
        self.at(off).to_f64()
    }
}

/// The 0/1 indicator of one label in a label volume.
pub(crate) struct Indicator<'a, L> {
    pub vol: Vol<'a, L>,
    pub label: L,
}

impl<L: Copy + PartialEq + Sync> Source for Indicator<'_, L> {
    fn dims(&self) -> [usize; 3] {
        self.vol.dims
    }
    fn strides(&self) -> [isize; 3] {
        self.vol.strides
    }
    #[inline(always)]
    unsafe fn load(&self, off: isize) -> f64 {
        if self.vol.at(off) == self.label {
            1.0
        } else {
            0.0
        }
    }
}

/// Clipping of the values a pass writes.
#[derive(Clone, Debug)]
pub(crate) enum Clip {
    None,
    /// to [lo, hi]
    All(f64, f64),
    /// to bounds[i] where i is the element's index along `axis`
    AlongAxis { axis: usize, bounds: Vec<(f64, f64)> },
}

impl Clip {
    #[inline]
    fn bounds(&self, pos: [usize; 3]) -> (f64, f64) {
        match self {
            Clip::None => (f64::NEG_INFINITY, f64::INFINITY),
            Clip::All(lo, hi) => (*lo, *hi),
            Clip::AlongAxis { axis, bounds } => bounds[pos[*axis]],
        }
    }
}

/// np.clip semantics for finite bounds; NaN stays NaN.
#[inline(always)]
fn clip_value(v: f64, lo: f64, hi: f64) -> f64 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Multi-index of the `idx`-th element of the sub-volume spanned by `axes` (row-major).
#[inline]
fn unravel(mut idx: usize, dims: &[usize; 3], axes: std::ops::Range<usize>, pos: &mut [usize; 3]) {
    for a in axes.rev() {
        pos[a] = idx % dims[a];
        idx /= dims[a];
    }
}

/// Resamples `src` along `axis` with `plan` into `dst` (contiguous, row-major, the source's
/// dims with `dims[axis] = plan.m`), clipping what it writes.
pub(crate) fn axis_pass<S: Source, D: Sample>(src: &S, axis: usize, plan: &AxisPlan, dst: &mut [D], clip: &Clip) {
    let dims = src.dims();
    let strides = src.strides();
    assert_eq!(dims[axis], plan.n);
    let mut odims = dims;
    odims[axis] = plan.m;
    assert_eq!(dst.len(), odims.iter().product::<usize>());
    if dst.is_empty() {
        return;
    }
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let (n, m) = (plan.n, plan.m);
    let s_ax = strides[axis];
    let dptr = SendPtr(dst.as_mut_ptr());

    // a task is up to LANES lines: consecutive outer indices when the axis is the innermost
    // non-trivial one, else consecutive inner indices of one outer index
    let by_outer = inner == 1;
    let chunks_per_outer = inner.div_ceil(LANES);
    let ntasks = if by_outer { outer.div_ceil(LANES) } else { outer * chunks_per_outer };
    let d_ax: isize = if by_outer { 1 } else { inner as isize };

    (0..ntasks).into_par_iter().for_each_init(
        || vec![[0.0f64; LANES]; plan.line_len],
        |line, t| {
            let dp = dptr;
            let mut src_base = [0isize; LANES];
            let mut dst_base = [0isize; LANES];
            let mut bounds = [(f64::NEG_INFINITY, f64::INFINITY); LANES];
            let lanes;
            let mut pos = [0usize; 3];
            if by_outer {
                let o0 = t * LANES;
                lanes = LANES.min(outer - o0);
                for l in 0..lanes {
                    let o = o0 + l;
                    unravel(o, &dims, 0..axis, &mut pos);
                    src_base[l] = (0..axis).map(|a| pos[a] as isize * strides[a]).sum();
                    dst_base[l] = (o * m) as isize;
                    bounds[l] = clip.bounds(pos);
                }
            } else {
                let o = t / chunks_per_outer;
                let i0 = (t % chunks_per_outer) * LANES;
                lanes = LANES.min(inner - i0);
                unravel(o, &dims, 0..axis, &mut pos);
                let ob: isize = (0..axis).map(|a| pos[a] as isize * strides[a]).sum();
                for l in 0..lanes {
                    unravel(i0 + l, &dims, axis + 1..3, &mut pos);
                    src_base[l] = ob + (axis + 1..3).map(|a| pos[a] as isize * strides[a]).sum::<isize>();
                    dst_base[l] = (o * m * inner + i0 + l) as isize;
                    bounds[l] = clip.bounds(pos);
                }
            }
            // load
            let body = &mut line[plan.pad..plan.pad + n];
            if by_outer {
                for l in 0..lanes {
                    let b = src_base[l];
                    for (i, row) in body.iter_mut().enumerate() {
                        row[l] = unsafe { src.load(b + i as isize * s_ax) };
                    }
                }
            } else {
                for (i, row) in body.iter_mut().enumerate() {
                    let o = i as isize * s_ax;
                    for l in 0..lanes {
                        row[l] = unsafe { src.load(src_base[l] + o) };
                    }
                }
            }
            if lanes < LANES {
                for row in body.iter_mut() {
                    row[lanes..].fill(0.0);
                }
            }
            plan.prepare(line);
            // evaluate and store
            for k in 0..m {
                let v = plan.eval(line, k);
                let ko = k as isize * d_ax;
                for l in 0..lanes {
                    let (lo, hi) = bounds[l];
                    unsafe { *dp.0.offset(dst_base[l] + ko) = D::from_f64(clip_value(v[l], lo, hi)) };
                }
            }
        },
    );
}

/// Runs the passes `steps` (axis, plan) one after the other, from `src` into `dst`, keeping
/// intermediates in `W` and clipping only what the last pass writes. `steps` must not be empty.
pub(crate) fn chain<S: Source, W: Sample, D: Sample>(src: &S, steps: &[(usize, &AxisPlan)], dst: &mut [D], clip: &Clip) {
    assert!(!steps.is_empty());
    let mut dims = src.dims();
    if steps.len() == 1 {
        let (axis, plan) = steps[0];
        axis_pass(src, axis, plan, dst, clip);
        return;
    }
    let (axis, plan) = steps[0];
    dims[axis] = plan.m;
    let mut cur: Vec<W> = uninit_vec(dims.iter().product());
    axis_pass(src, axis, plan, &mut cur, &Clip::None);
    for (si, &(axis, plan)) in steps.iter().enumerate().skip(1) {
        let vol = Vol::from_slice(&cur, dims);
        let mut odims = dims;
        odims[axis] = plan.m;
        if si + 1 == steps.len() {
            axis_pass(&vol, axis, plan, dst, clip);
            return;
        }
        let mut next: Vec<W> = uninit_vec(odims.iter().product());
        axis_pass(&vol, axis, plan, &mut next, &Clip::None);
        cur = next;
        dims = odims;
    }
}

/// A vector whose every element the caller overwrites before reading; zero-filled, which
/// for the float/int types used here is a calloc-backed allocation (pages touched lazily).
pub(crate) fn uninit_vec<T: Copy + Default>(len: usize) -> Vec<T> {
    vec![T::default(); len]
}

/// NaN-ignoring (min, max) of the volume (`axis = None`) or of each slice along `axis`;
/// (NaN, NaN) where there is no non-NaN value.
pub(crate) fn min_max<T: Sample>(vol: &Vol<'_, T>, axis: Option<usize>) -> Vec<(f64, f64)> {
    let nb = axis.map_or(1, |a| vol.dims[a]);
    let [d0, d1, d2] = vol.dims;
    let empty = || vec![(f64::INFINITY, f64::NEG_INFINITY); nb];
    let acc = (0..d0 * d1)
        .into_par_iter()
        .fold(empty, |mut acc, r| {
            let (i0, i1) = (r / d1, r % d1);
            let base = vol.offset([i0, i1, 0]);
            let s2 = vol.strides[2];
            match axis {
                Some(2) => {
                    for (i2, b) in acc.iter_mut().enumerate() {
                        let v = unsafe { vol.at(base + i2 as isize * s2) }.to_f64();
                        if v < b.0 {
                            b.0 = v;
                        }
                        if v > b.1 {
                            b.1 = v;
                        }
                    }
                }
                _ => {
                    let slot = match axis {
                        Some(0) => i0,
                        Some(1) => i1,
                        _ => 0,
                    };
                    let (mut lo, mut hi) = acc[slot];
                    for i2 in 0..d2 {
                        let v = unsafe { vol.at(base + i2 as isize * s2) }.to_f64();
                        if v < lo {
                            lo = v;
                        }
                        if v > hi {
                            hi = v;
                        }
                    }
                    acc[slot] = (lo, hi);
                }
            }
            acc
        })
        .reduce(empty, |mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                x.0 = x.0.min(y.0);
                x.1 = x.1.max(y.1);
            }
            a
        });
    acc.into_iter()
        .map(|(lo, hi)| if lo > hi { (f64::NAN, f64::NAN) } else { (lo, hi) })
        .collect()
}

/// `dst[..., k, ...] = src[..., index[k], ...]` along `axis` (nearest-neighbour selection),
/// `dst` contiguous with the source's dims and `dims[axis] = index.len()`.
pub(crate) fn gather_axis<T: Copy + Send + Sync>(src: &Vol<'_, T>, axis: usize, index: &[usize], dst: &mut [T]) {
    let mut odims = src.dims;
    odims[axis] = index.len();
    assert_eq!(dst.len(), odims.iter().product::<usize>());
    if dst.is_empty() {
        return;
    }
    let row = odims[2];
    dst.par_chunks_mut(row).enumerate().for_each(|(r, out)| {
        let (i0, i1) = (r / odims[1], r % odims[1]);
        match axis {
            0 => {
                let base = src.offset([index[i0], i1, 0]);
                for (i2, o) in out.iter_mut().enumerate() {
                    *o = unsafe { src.at(base + i2 as isize * src.strides[2]) };
                }
            }
            1 => {
                let base = src.offset([i0, index[i1], 0]);
                for (i2, o) in out.iter_mut().enumerate() {
                    *o = unsafe { src.at(base + i2 as isize * src.strides[2]) };
                }
            }
            _ => {
                let base = src.offset([i0, i1, 0]);
                for (o, &j) in out.iter_mut().zip(index) {
                    *o = unsafe { src.at(base + j as isize * src.strides[2]) };
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::plan::resample_line;
    use ndarray::Array3;

    fn reference_resize(a: &Array3<f64>, shape: [usize; 3], order: usize) -> Array3<f64> {
        // axis by axis with the scalar line routine
        let mut cur = a.clone();
        for axis in 0..3 {
            let plan = AxisPlan::new(cur.shape()[axis], shape[axis], order);
            let mut odims = [cur.shape()[0], cur.shape()[1], cur.shape()[2]];
            odims[axis] = shape[axis];
            let mut next = Array3::<f64>::zeros(odims);
            let mut scratch = Vec::new();
            ndarray::Zip::from(next.lanes_mut(ndarray::Axis(axis))).and(cur.lanes(ndarray::Axis(axis))).for_each(|mut o, i| {
                let input: Vec<f64> = i.iter().copied().collect();
                let mut out = vec![0.0; shape[axis]];
                resample_line(&plan, &input, &mut scratch, &mut out);
                for (d, s) in o.iter_mut().zip(out) {
                    *d = s;
                }
            });
            cur = next;
        }
        cur
    }

    #[test]
    fn passes_match_line_routine_on_strided_input() {
        let dims = (5, 7, 9);
        let a = Array3::from_shape_fn(dims, |(i, j, k)| ((i * 31 + j * 17 + k * 7) % 11) as f64 * 0.25 - 1.0);
        // transposed view: non-contiguous source
        let t = a.view().reversed_axes();
        let tt = t.to_owned();
        for order in [0, 1, 3] {
            let shape = [12, 4, 3];
            let expect = reference_resize(&tt, shape, order);
            let vol = Vol::from_view(&t);
            let plans: Vec<AxisPlan> = (0..3).map(|ax| AxisPlan::new(vol.dims[ax], shape[ax], order)).collect();
            let steps: Vec<(usize, &AxisPlan)> = vec![(2, &plans[2]), (0, &plans[0]), (1, &plans[1])];
            let mut out = vec![0.0f64; shape.iter().product()];
            chain::<_, f64, f64>(&vol, &steps, &mut out, &Clip::None);
            for (x, y) in out.iter().zip(expect.iter()) {
                assert!((x - y).abs() < 1e-12, "order {order}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn min_max_per_slice() {
        let a = Array3::from_shape_fn((3, 4, 5), |(i, j, k)| (i * 100 + j * 10 + k) as f32);
        let v = a.view();
        let vol = Vol::from_view(&v);
        assert_eq!(min_max(&vol, None), vec![(0.0, 234.0)]);
        assert_eq!(min_max(&vol, Some(0)), vec![(0.0, 34.0), (100.0, 134.0), (200.0, 234.0)]);
        assert_eq!(min_max(&vol, Some(1))[3], (30.0, 234.0));
        assert_eq!(min_max(&vol, Some(2))[4], (4.0, 234.0));
    }

    #[test]
    fn gather_selects_slices() {
        let a = Array3::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 100 + j * 10 + k) as i32);
        let v = a.view();
        let vol = Vol::from_view(&v);
        let mut out = vec![0; 2 * 3 * 3];
        gather_axis(&vol, 2, &[3, 0, 0], &mut out);
        assert_eq!(&out[..3], &[3, 0, 0]);
        let mut out = vec![0; 2 * 2 * 4];
        gather_axis(&vol, 1, &[2, 2], &mut out);
        assert_eq!(&out[..4], &[20, 21, 22, 23]);
    }
}
