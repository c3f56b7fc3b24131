//! The separable machinery: one axis pass over a 3-D volume (lines of the axis processed
//! in blocks of lanes in f64 scratch), chains of passes, min/max scans and nearest gathers.

// lane loops index several arrays in step on purpose (they vectorise that way)
#![allow(clippy::needless_range_loop)]

use std::marker::PhantomData;

use ndarray::ArrayView3;
use rayon::prelude::*;

use super::plan::{AxisPlan, Lane};
use crate::mem::Zeroable;

/// A floating point element the data path reads and writes.
pub trait Sample: Copy + Default + Send + Sync + Zeroable + 'static {
    /// Storage of intermediate results between axis passes: f32 for f16/f32, f64 for f64.
    type Work: Sample;
    /// Arithmetic of the scratch lines: f32 for f32, f64 for f64 and f16 (whose results
    /// must land within one f16 step, also near zero).
    type Scratch: Lane;
    /// Whether f32 lines are precise enough at spline orders 0 and 1 (no prefilter: a
    /// convex combination of two samples per axis), where `Scratch` is wider.
    const F32_LINES_UP_TO_ORDER_1: bool = false;
    /// Stores a line value (one rounding, straight from the line's type).
    fn from_lane<F: Lane>(v: F) -> Self;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

impl Sample for f32 {
    type Work = f32;
    type Scratch = f32;
    #[inline(always)]
    fn from_lane<F: Lane>(v: F) -> Self {
        v.to_f32()
    }
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
    type Scratch = f64;
    #[inline(always)]
    fn from_lane<F: Lane>(v: F) -> Self {
        v.to_f64()
    }
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
    type Scratch = f64;
    const F32_LINES_UP_TO_ORDER_1: bool = true;
    #[inline(always)]
    fn from_lane<F: Lane>(v: F) -> Self {
        v.to_f16()
    }
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

// SAFETY: `Vol` is a read-only view of an array borrowed for `'a`; sharing it between threads is as safe as sharing
// `&[T]` with `T: Sync`.
unsafe impl<T: Sync> Send for Vol<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for Vol<'_, T> {}

impl<'a, T: Copy> Vol<'a, T> {
    pub fn from_view(v: &ArrayView3<'a, T>) -> Self {
        let s = v.strides();
        Vol {
            ptr: v.as_ptr(),
            dims: [v.dim().0, v.dim().1, v.dim().2],
            strides: [s[0], s[1], s[2]],
            _life: PhantomData,
        }
    }

    pub fn from_slice(data: &'a [T], dims: [usize; 3]) -> Self {
        assert_eq!(data.len(), dims.iter().product::<usize>());
        let strides = [(dims[1] * dims[2]) as isize, dims[2] as isize, 1];
        Vol {
            ptr: data.as_ptr(),
            dims,
            strides,
            _life: PhantomData,
        }
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

    /// The element at `i`, read without a bounds check.
    ///
    /// # Safety
    /// `i` must lie inside `dims`.
    #[inline(always)]
    pub unsafe fn get(&self, i: [usize; 3]) -> T {
        debug_assert!(i[0] < self.dims[0] && i[1] < self.dims[1] && i[2] < self.dims[2]);
        // SAFETY: the caller guarantees `i` is inside `dims`, so its offset is an element.
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
    AlongAxis {
        axis: usize,
        bounds: Vec<(f64, f64)>,
    },
}

impl Clip {
    #[inline(always)]
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
fn clip_value<F: Lane>(v: F, lo: F, hi: F) -> F {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

use crate::mem::SendPtr;

/// Multi-index of the `idx`-th element of the sub-volume spanned by `axes` (row-major).
#[inline(always)]
fn unravel(mut idx: usize, dims: &[usize; 3], axes: std::ops::Range<usize>, pos: &mut [usize; 3]) {
    for a in axes.rev() {
        pos[a] = idx % dims[a];
        idx /= dims[a];
    }
}

/// Resamples `src` along `axis` with `plan` into `dst` (contiguous, row-major, the source's
/// dims with `dims[axis] = plan.m`), clipping what it writes.
///
/// Lines along the axis are processed in blocks of `L` lanes in f64 scratch. When the axis is
/// the innermost non-trivial one the lanes are separate contiguous lines (L = 16); otherwise
/// they are neighbouring columns, so every row of the block is one contiguous run of memory,
/// and L is as wide as the scratch budget allows (fewer cache lines and TLB entries per row).
pub(crate) fn axis_pass<F: Lane, S: Source, D: Sample>(
    src: &S,
    axis: usize,
    plan: &AxisPlan,
    dst: &mut [D],
    clip: &Clip,
) {
    axis_pass_in::<F, S, D>(src, axis, plan, dst, clip, true)
}

/// [`axis_pass`], in parallel or on the calling thread.
pub(crate) fn axis_pass_in<F: Lane, S: Source, D: Sample>(
    src: &S,
    axis: usize,
    plan: &AxisPlan,
    dst: &mut [D],
    clip: &Clip,
    parallel: bool,
) {
    let dims = src.dims();
    let inner: usize = dims[axis + 1..].iter().product();
    if inner == 1 {
        return axis_pass_lanes::<F, S, D, 16>(src, axis, plan, dst, clip, parallel);
    }
    // the widest block whose scratch fits ~256 KiB and that pads the rows by at most 1/8
    let budget = 256 * 1024 / (std::mem::size_of::<F>() * plan.line_len);
    let width = [128usize, 64, 32]
        .into_iter()
        .find(|&w| w <= budget && inner.div_ceil(w) * w - inner <= inner / 8)
        .unwrap_or(16);
    match width {
        128 => axis_pass_lanes::<F, S, D, 128>(src, axis, plan, dst, clip, parallel),
        64 => axis_pass_lanes::<F, S, D, 64>(src, axis, plan, dst, clip, parallel),
        32 => axis_pass_lanes::<F, S, D, 32>(src, axis, plan, dst, clip, parallel),
        _ => axis_pass_lanes::<F, S, D, 16>(src, axis, plan, dst, clip, parallel),
    }
}

/// What every block task of one axis pass shares.
struct PassCtx<'a, S, D> {
    src: &'a S,
    plan: &'a AxisPlan,
    clip: &'a Clip,
    dst: SendPtr<D>,
    dims: [usize; 3],
    strides: [isize; 3],
    axis: usize,
    outer: usize,
    inner: usize,
    chunks_per_outer: usize,
}

fn axis_pass_lanes<F: Lane, S: Source, D: Sample, const L: usize>(
    src: &S,
    axis: usize,
    plan: &AxisPlan,
    dst: &mut [D],
    clip: &Clip,
    parallel: bool,
) {
    let dims = src.dims();
    assert_eq!(dims[axis], plan.n);
    let mut odims = dims;
    odims[axis] = plan.m;
    assert_eq!(dst.len(), odims.iter().product::<usize>());
    if dst.is_empty() {
        return;
    }
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    // a task is up to L lines: consecutive outer indices when the axis is the innermost
    // non-trivial one, else consecutive inner indices of one outer index
    let chunks_per_outer = inner.div_ceil(L);
    let ntasks = if inner == 1 {
        outer.div_ceil(L)
    } else {
        outer * chunks_per_outer
    };
    let ctx = PassCtx {
        src,
        plan,
        clip,
        dst: SendPtr(dst.as_mut_ptr()),
        dims,
        strides: src.strides(),
        axis,
        outer,
        inner,
        chunks_per_outer,
    };
    let wide = simd_available();
    let run = |line: &mut Vec<[F; L]>, t: usize| {
        if wide {
            // SAFETY: the CPU supports the features (checked at run time)
            #[cfg(target_arch = "x86_64")]
            unsafe {
                block_task_avx2::<F, S, D, L>(&ctx, line, t)
            }
        } else {
            block_task::<F, S, D, L>(&ctx, line, t)
        }
    };
    if parallel {
        (0..ntasks)
            .into_par_iter()
            .for_each_init(|| vec![[F::ZERO; L]; plan.line_len], run);
    } else {
        let mut line = vec![[F::ZERO; L]; plan.line_len];
        for t in 0..ntasks {
            run(&mut line, t);
        }
    }
}

/// Whether the AVX2 builds of the hot loops may run (detected once; `OXUNET_NO_SIMD=1`
/// forces the baseline build, which computes the same results, for testing).
pub(crate) fn simd_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if std::env::var_os("OXUNET_NO_SIMD").is_some_and(|v| v != "0" && !v.is_empty()) {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// The same task compiled for AVX2 (4 f64 per instruction instead of SSE2's 2). No fused
/// multiply-adds are formed (Rust never contracts `a * b + c`), so results are identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_task_avx2<F: Lane, S: Source, D: Sample, const L: usize>(
    ctx: &PassCtx<'_, S, D>,
    line: &mut [[F; L]],
    t: usize,
) {
    block_task::<F, S, D, L>(ctx, line, t)
}

/// One block of up to L lines: load into f64 scratch, pad + prefilter, evaluate, clip, store.
#[inline(always)]
fn block_task<F: Lane, S: Source, D: Sample, const L: usize>(ctx: &PassCtx<'_, S, D>, line: &mut [[F; L]], t: usize) {
    let PassCtx {
        src,
        plan,
        clip,
        dims,
        strides,
        axis,
        outer,
        inner,
        chunks_per_outer,
        ..
    } = *ctx;
    let (n, m) = (plan.n, plan.m);
    let s_ax = strides[axis];
    let by_outer = inner == 1;
    let d_ax: isize = if by_outer { 1 } else { inner as isize };
    let dp = ctx.dst;
    let mut src_base = [0isize; L];
    let mut dst_base = [0isize; L];
    let mut bounds = [(F::ZERO, F::ZERO); L];
    let lanes;
    let mut pos = [0usize; 3];
    let bnd = |pos: [usize; 3]| {
        let (lo, hi) = clip.bounds(pos);
        (F::from_f64(lo), F::from_f64(hi))
    };
    if by_outer {
        let o0 = t * L;
        lanes = L.min(outer - o0);
        for l in 0..lanes {
            let o = o0 + l;
            unravel(o, &dims, 0..axis, &mut pos);
            src_base[l] = (0..axis).map(|a| pos[a] as isize * strides[a]).sum();
            dst_base[l] = (o * m) as isize;
            bounds[l] = bnd(pos);
        }
    } else {
        let o = t / chunks_per_outer;
        let i0 = (t % chunks_per_outer) * L;
        lanes = L.min(inner - i0);
        unravel(o, &dims, 0..axis, &mut pos);
        let ob: isize = (0..axis).map(|a| pos[a] as isize * strides[a]).sum();
        for l in 0..lanes {
            unravel(i0 + l, &dims, axis + 1..3, &mut pos);
            src_base[l] = ob + (axis + 1..3).map(|a| pos[a] as isize * strides[a]).sum::<isize>();
            dst_base[l] = (o * m * inner + i0 + l) as isize;
            bounds[l] = bnd(pos);
        }
    }
    // lanes of a block are contiguous in both source and destination when the block spans
    // columns of unit stride (the common, C-contiguous case)
    let contiguous = !by_outer
        && (0..lanes).all(|l| src_base[l] == src_base[0] + l as isize)
        && (0..lanes).all(|l| dst_base[l] == dst_base[0] + l as isize);
    // load
    let body = &mut line[plan.pad..plan.pad + n];
    if by_outer {
        for l in 0..lanes {
            let b = src_base[l];
            for (i, row) in body.iter_mut().enumerate() {
                // SAFETY: `src_base[l]` is the offset of line `l`'s first element (unravelled from in-range
                // positions) and `i < n`, the length of that line along `axis`, so the offset is an element of `src`.
                row[l] = F::from_f64(unsafe { src.load(b + i as isize * s_ax) });
            }
        }
    } else if contiguous {
        let b = src_base[0];
        for (i, row) in body.iter_mut().enumerate() {
            let o = b + i as isize * s_ax;
            for (l, v) in row[..lanes].iter_mut().enumerate() {
                // SAFETY: a contiguous block: `o + l` is element `i` of line `l < lanes` (same bound as above).
                *v = F::from_f64(unsafe { src.load(o + l as isize) });
            }
        }
    } else {
        for (i, row) in body.iter_mut().enumerate() {
            let o = i as isize * s_ax;
            for l in 0..lanes {
                // SAFETY: as above: line `l < lanes` starts at `src_base[l]` and `i` stays below the line length.
                row[l] = F::from_f64(unsafe { src.load(src_base[l] + o) });
            }
        }
    }
    if lanes < L {
        for row in body.iter_mut() {
            row[lanes..].fill(F::ZERO);
        }
    }
    plan.prepare(line);
    // evaluate and store
    let uniform = (1..lanes).all(|l| bounds[l] == bounds[0]);
    for k in 0..m {
        let v = plan.eval(line, k);
        let ko = k as isize * d_ax;
        if contiguous && uniform {
            let (lo, hi) = bounds[0];
            // SAFETY: `dst_base[0] + ko` is element `k < m` of the first of `lanes` output lines that are adjacent in
            // `dst` (checked in `contiguous`), so the `lanes` elements lie inside `dst`, and no other task writes
            // them (tasks own disjoint lines).
            let out = unsafe { std::slice::from_raw_parts_mut(dp.0.offset(dst_base[0] + ko), lanes) };
            for (o, &x) in out.iter_mut().zip(&v[..lanes]) {
                *o = D::from_lane(clip_value(x, lo, hi));
            }
        } else {
            for l in 0..lanes {
                let (lo, hi) = bounds[l];
                // SAFETY: `dst_base[l] + ko` is element `k < m` of output line `l`, inside `dst`; each line belongs
                // to exactly one task.
                unsafe { *dp.0.offset(dst_base[l] + ko) = D::from_lane(clip_value(v[l], lo, hi)) };
            }
        }
    }
}

/// One slice (index `c` along axis 0) of a source, seen as a 1 x d1 x d2 volume.
struct Slice0<'a, S> {
    src: &'a S,
    base: isize,
}

impl<S: Source> Source for Slice0<'_, S> {
    fn dims(&self) -> [usize; 3] {
        let d = self.src.dims();
        [1, d[1], d[2]]
    }
    fn strides(&self) -> [isize; 3] {
        self.src.strides()
    }
    #[inline(always)]
    unsafe fn load(&self, off: isize) -> f64 {
        self.src.load(self.base + off)
    }
}

/// Resizes axes 1 and 2 (in `order`) slice by slice along axis 0: each slice's first pass
/// stays in a per-thread buffer, so no full-size intermediate exists and the data between
/// the two passes stays in cache. `dst` has dims `[d0, m1, m2]`.
fn fused_12<S: Source, W: Sample, D: Sample, F: Lane>(
    src: &S,
    first: (usize, &AxisPlan),
    second: (usize, &AxisPlan),
    dst: &mut [D],
    clip: &Clip,
) {
    let dims = src.dims();
    let mut mid = [1, dims[1], dims[2]];
    mid[first.0] = first.1.m;
    let mut out = mid;
    out[second.0] = second.1.m;
    let per = out[1] * out[2];
    assert_eq!(dst.len(), dims[0] * per);
    let s0 = src.strides()[0];
    dst.par_chunks_mut(per).enumerate().for_each_init(
        || uninit_vec::<W>(mid[1] * mid[2]),
        |buf, (c, out_slice)| {
            let slice = Slice0 {
                src,
                base: c as isize * s0,
            };
            axis_pass_in::<F, _, W>(&slice, first.0, first.1, buf, &Clip::None, false);
            let clip_c = match clip {
                Clip::AlongAxis { axis: 0, bounds } => Clip::All(bounds[c].0, bounds[c].1),
                other => other.clone(),
            };
            let v = Vol::from_slice(buf, mid);
            axis_pass_in::<F, _, D>(&v, second.0, second.1, out_slice, &clip_c, false);
        },
    );
}

/// Runs the passes `steps` (axis, plan) one after the other, from `src` into `dst`, keeping
/// intermediates in `W` and clipping only what the last pass writes. `steps` must not be empty.
///
/// When both axes 1 and 2 change (and clipping does not vary along them) they are fused
/// slice by slice ([`fused_12`]), before or after the axis-0 pass, whichever moves fewer
/// samples; then at most one full-size intermediate exists.
pub(crate) fn chain<S: Source, W: Sample, D: Sample, F: Lane>(
    src: &S,
    steps: &[(usize, &AxisPlan)],
    dst: &mut [D],
    clip: &Clip,
) {
    chain_sized::<S, W, D, F>(src, steps, dst, clip, None)
}

/// [`chain`], choosing the order of the fused passes and the axis-0 pass as for an axis 0
/// resized from `depth0 = (n0, m0)` planes (a band of planes must take the whole volume's
/// order to get its arithmetic); `None`: from the axis-0 plan itself.
pub(crate) fn chain_sized<S: Source, W: Sample, D: Sample, F: Lane>(
    src: &S,
    steps: &[(usize, &AxisPlan)],
    dst: &mut [D],
    clip: &Clip,
    depth0: Option<(usize, usize)>,
) {
    assert!(!steps.is_empty());
    let clip_ok = !matches!(clip, Clip::AlongAxis { axis: 1 | 2, .. });
    let p1 = steps.iter().position(|s| s.0 == 1);
    let p2 = steps.iter().position(|s| s.0 == 2);
    if let (true, Some(p1), Some(p2)) = (clip_ok, p1, p2) {
        let (first, second) = if p1 < p2 {
            (steps[p1], steps[p2])
        } else {
            (steps[p2], steps[p1])
        };
        let zero = steps.iter().find(|s| s.0 == 0).copied();
        let dims = src.dims();
        let Some((_, plan0)) = zero else {
            return fused_12::<S, W, D, F>(src, first, second, dst, clip);
        };
        // clipping along axis 0 indexes the source's slices: only valid without an axis-0 pass
        assert!(
            !matches!(clip, Clip::AlongAxis { .. }),
            "per-slice clipping with an axis-0 pass"
        );
        // full-volume samples read + written by each order (the fused passes' middle step
        // stays in cache): slices of a = d1 * d2 samples in, c = m1 * m2 out
        let (n0, m0) = depth0.unwrap_or((plan0.n, plan0.m));
        let a = (dims[1] * dims[2]) as f64;
        let c = (second.1.m * first.1.m) as f64;
        let fused_first = n0 as f64 * (a + c) + (n0 + m0) as f64 * c;
        let zero_first = (n0 + m0) as f64 * a + m0 as f64 * (a + c);
        if fused_first <= zero_first {
            let mut mid = dims;
            mid[first.0] = first.1.m;
            mid[second.0] = second.1.m;
            let mut buf: Vec<W> = uninit_vec(mid.iter().product());
            fused_12::<S, W, W, F>(src, first, second, &mut buf, &Clip::None);
            axis_pass::<F, _, _>(&Vol::from_slice(&buf, mid), 0, plan0, dst, clip);
        } else {
            let mid = [plan0.m, dims[1], dims[2]];
            let mut buf: Vec<W> = uninit_vec(mid.iter().product());
            axis_pass::<F, _, _>(src, 0, plan0, &mut buf, &Clip::None);
            fused_12::<_, W, D, F>(&Vol::from_slice(&buf, mid), first, second, dst, clip);
        }
        return;
    }
    let mut dims = src.dims();
    if steps.len() == 1 {
        let (axis, plan) = steps[0];
        axis_pass::<F, _, _>(src, axis, plan, dst, clip);
        return;
    }
    let (axis, plan) = steps[0];
    dims[axis] = plan.m;
    let mut cur: Vec<W> = uninit_vec(dims.iter().product());
    axis_pass::<F, _, _>(src, axis, plan, &mut cur, &Clip::None);
    for (si, &(axis, plan)) in steps.iter().enumerate().skip(1) {
        let vol = Vol::from_slice(&cur, dims);
        let mut odims = dims;
        odims[axis] = plan.m;
        if si + 1 == steps.len() {
            axis_pass::<F, _, _>(&vol, axis, plan, dst, clip);
            return;
        }
        let mut next: Vec<W> = uninit_vec(odims.iter().product());
        axis_pass::<F, _, _>(&vol, axis, plan, &mut next, &Clip::None);
        cur = next;
        dims = odims;
    }
}

/// A zero-filled intermediate buffer (fallible: unwinds with `OutOfMemory`, see `crate::mem`).
pub(crate) fn uninit_vec<T: Zeroable>(len: usize) -> Vec<T> {
    crate::mem::zeroed("resampling buffer", len)
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
                        // SAFETY: `base` is the offset of row (i0, i1) and `i2 < d2`, so the element is inside the
                        // volume.
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
                    // lane-wise min/max (element-wise selects vectorise), then across lanes
                    const W: usize = 16;
                    let mut lo = [f64::INFINITY; W];
                    let mut hi = [f64::NEG_INFINITY; W];
                    let full = d2 / W * W;
                    for c in (0..full).step_by(W) {
                        for l in 0..W {
                            // SAFETY: `c + l < full <= d2` within row (i0, i1).
                            let v = unsafe { vol.at(base + (c + l) as isize * s2) }.to_f64();
                            lo[l] = if v < lo[l] { v } else { lo[l] };
                            hi[l] = if v > hi[l] { v } else { hi[l] };
                        }
                    }
                    for i2 in full..d2 {
                        // SAFETY: `i2 < d2` within row (i0, i1).
                        let v = unsafe { vol.at(base + i2 as isize * s2) }.to_f64();
                        lo[0] = if v < lo[0] { v } else { lo[0] };
                        hi[0] = if v > hi[0] { v } else { hi[0] };
                    }
                    let (mut a, mut b) = acc[slot];
                    for l in 0..W {
                        a = if lo[l] < a { lo[l] } else { a };
                        b = if hi[l] > b { hi[l] } else { b };
                    }
                    acc[slot] = (a, b);
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
    let s2 = src.strides[2];
    dst.par_chunks_mut(row).enumerate().for_each(|(r, out)| {
        let (i0, i1) = (r / odims[1], r % odims[1]);
        let base = match axis {
            0 => src.offset([index[i0], i1, 0]),
            1 => src.offset([i0, index[i1], 0]),
            _ => src.offset([i0, i1, 0]),
        };
        if axis == 2 {
            for (o, &j) in out.iter_mut().zip(index) {
                // SAFETY: `j` comes from `index`, whose entries are indices along axis 2 (< dims[2]) by construction
                // of the nearest-neighbour plan.
                *o = unsafe { src.at(base + j as isize * s2) };
            }
        } else if s2 == 1 {
            // SAFETY: unit stride: the row of `row = dims[2]` elements starting at `base` lies inside the volume.
            out.copy_from_slice(unsafe { std::slice::from_raw_parts(src.ptr.offset(base), row) });
        } else {
            for (i2, o) in out.iter_mut().enumerate() {
                // SAFETY: `i2 < row = dims[2]` within the row starting at `base`.
                *o = unsafe { src.at(base + i2 as isize * s2) };
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
            ndarray::Zip::from(next.lanes_mut(ndarray::Axis(axis)))
                .and(cur.lanes(ndarray::Axis(axis)))
                .for_each(|mut o, i| {
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
        // (both fusion orders: axis 0 grows / axis 0 shrinks much more than the slices)
        for (order, shape) in [
            (0, [12, 4, 3]),
            (1, [12, 4, 3]),
            (3, [12, 4, 3]),
            (3, [2, 11, 6]),
            (1, [3, 9, 2]),
        ] {
            let expect = reference_resize(&tt, shape, order);
            let vol = Vol::from_view(&t);
            let plans: Vec<AxisPlan> = (0..3).map(|ax| AxisPlan::new(vol.dims[ax], shape[ax], order)).collect();
            let steps: Vec<(usize, &AxisPlan)> = vec![(2, &plans[2]), (0, &plans[0]), (1, &plans[1])];
            let mut out = vec![0.0f64; shape.iter().product()];
            chain::<_, f64, f64, f64>(&vol, &steps, &mut out, &Clip::None);
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
        assert_eq!(
            min_max(&vol, Some(0)),
            vec![(0.0, 34.0), (100.0, 134.0), (200.0, 234.0)]
        );
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

#[cfg(test)]
mod timing {
    use super::*;
    use std::time::Instant;

    fn best_of(n: usize, mut f: impl FnMut()) -> f64 {
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// `cargo test --release -p oxunet-core time_axis_pass -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn time_axis_pass() {
        // the isotropic benchmark: 160^3 -> 123^3, order 3, axis by axis
        let d = [160usize, 160, 160];
        let src: Vec<f32> = (0..d.iter().product::<usize>()).map(|i| (i % 1013) as f32).collect();
        let vol = Vol::from_slice(&src, d);
        let mut dims = d;
        let mut cur = src.clone();
        for axis in 0..3 {
            let plan = AxisPlan::new(dims[axis], 123, 3);
            let mut od = dims;
            od[axis] = 123;
            let mut out: Vec<f32> = uninit_vec(od.iter().product());
            let v = Vol::from_slice(&cur, dims);
            let ms = best_of(10, || {
                axis_pass::<f32, _, _>(&v, axis, &plan, &mut out, &Clip::All(0.0, 1e9))
            });
            eprintln!("160^3 chain, axis {axis}: {dims:?} -> {od:?}: {ms:.2} ms");
            cur = out;
            dims = od;
        }
        let ms = best_of(10, || {
            min_max(&vol, None);
        });
        eprintln!("min/max of 160^3: {ms:.2} ms");
        // the anisotropic benchmark's in-plane passes and z gather
        let d = [80usize, 512, 512];
        let src: Vec<f32> = (0..d.iter().product::<usize>()).map(|i| (i % 1013) as f32).collect();
        let vol = Vol::from_slice(&src, d);
        for axis in [1usize, 2] {
            let plan = AxisPlan::new(512, 448, 3);
            let mut od = d;
            od[axis] = 448;
            let mut out: Vec<f32> = uninit_vec(od.iter().product());
            let ms = best_of(5, || {
                axis_pass::<f32, _, _>(&vol, axis, &plan, &mut out, &Clip::All(0.0, 1e9))
            });
            eprintln!("80x512x512 axis {axis} -> 448: {ms:.2} ms");
        }
        let mut out: Vec<f32> = uninit_vec(267 * 512 * 512);
        let nn = AxisPlan::nearest_indices(80, 267);
        let ms = best_of(5, || gather_axis(&vol, 0, &nn, &mut out));
        eprintln!("gather 80 -> 267 planes of 512^2: {ms:.2} ms");
    }
}
