//! One-dimensional resampling operators, bit for bit the arithmetic of
//! `scipy.ndimage.zoom(..., mode='nearest', grid_mode=True)` (scipy 1.17) along one axis.
//!
//! Output sample `k` of an axis resized from `n` to `m` samples sits at the input coordinate
//! `cc = (k + 0.5) * (n / m) - 0.5` (pixel areas aligned). Order 0 takes the sample at
//! `floor(cc + 0.5)`, order 1 the two samples around `cc` with weights `1 - x` and
//! `1 - (1 - x)` (scipy's spelling, which matters for exact ties), order 3 the four cubic
//! B-spline weights applied to the prefiltered coefficients. Tap indices outside the axis are
//! clamped to it ('nearest' extension, the coordinate itself is never clamped). For order 3
//! scipy first pads the axis with 12 copies of each edge sample and runs the B-spline
//! prefilter on that padded line with its 'nearest' (= reflect) boundary initialisation; the
//! plan addresses that padded line.
//!
//! Tensor-product interpolation is separable, so an N-d resize is a sequence of these 1-D
//! operators, one axis at a time.

// lane loops index several arrays in step on purpose (they vectorise that way)
#![allow(clippy::needless_range_loop)]

/// Edge samples scipy prepends/appends before prefiltering for mode 'nearest'.
pub(crate) const NPAD: usize = 12;

/// The pole of the cubic B-spline prefilter, sqrt(3) - 2.
const POLE3: f64 = -0.267_949_192_431_122_7;

/// Interpolation taps of one output sample: up to 4 indices into the (padded) line and
/// weights (also rounded to f32 for f32 scratch lines).
#[derive(Clone, Copy, Debug)]
pub struct Taps {
    pub idx: [u32; 4],
    pub w: [f64; 4],
    pub w32: [f32; 4],
}

/// The arithmetic type of scratch lines: f64, or f32 where its precision is plenty (the
/// B-spline prefilter is a stable recursion with |pole| < 0.27, so f32 lines lose only a few
/// f32 ulps of the data's magnitude).
pub trait Lane:
    Copy
    + Default
    + Send
    + Sync
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::AddAssign
    + std::ops::MulAssign
    + 'static
{
    const ZERO: Self;
    /// Terms of the causal initialisation sum below this (relative) are dropped.
    const NEGLIGIBLE: f64;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn to_f32(self) -> f32;
    fn to_f16(self) -> half::f16;
    fn weights(t: &Taps) -> [Self; 4];
}

impl Lane for f64 {
    const ZERO: f64 = 0.0;
    const NEGLIGIBLE: f64 = 1e-30;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn to_f16(self) -> half::f16 {
        half::f16::from_f64(self)
    }
    #[inline(always)]
    fn from_f64(v: f64) -> f64 {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn weights(t: &Taps) -> [f64; 4] {
        t.w
    }
}

impl Lane for f32 {
    const ZERO: f32 = 0.0;
    const NEGLIGIBLE: f64 = 1e-12;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn to_f16(self) -> half::f16 {
        half::f16::from_f32(self)
    }
    #[inline(always)]
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn weights(t: &Taps) -> [f32; 4] {
        t.w32
    }
}

/// A 1-D resampling operator from `n` to `m` samples at spline order 0, 1 or 3.
#[derive(Clone, Debug)]
pub(crate) struct AxisPlan {
    pub n: usize,
    pub m: usize,
    pub order: usize,
    /// Number of taps per output sample (order + 1).
    pub ntaps: usize,
    /// Offset of input sample 0 in the working line (12 for order 3, else 0).
    pub pad: usize,
    /// Length of the working line (n + 24 for order 3, else n).
    pub line_len: usize,
    pub taps: Vec<Taps>,
    /// Order 1 only: clamp every output sample to the range of its two taps (see [`AxisPlan::bounded`]).
    pub clamp_taps: bool,
}

/// The input coordinate of output sample `k`, computed in scipy's operation order.
#[inline]
pub(crate) fn source_coordinate(k: usize, zoom: f64) -> f64 {
    let mut cc = k as f64;
    cc += 0.5;
    cc *= zoom;
    cc -= 0.5;
    cc
}

/// scipy's `get_spline_interpolation_weights` for orders 1 and 3.
#[inline]
fn spline_weights(cc: f64, order: usize) -> [f64; 4] {
    let x = cc - cc.floor();
    let mut w = [0.0; 4];
    match order {
        1 => {
            w[0] = 1.0 - x;
            w[1] = 1.0 - w[0];
        }
        3 => {
            let y = x;
            let z = 1.0 - x;
            w[1] = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
            w[2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
            w[0] = z * z * z / 6.0;
            let mut last = 1.0;
            last -= w[0];
            last -= w[1];
            last -= w[2];
            w[3] = last;
        }
        _ => unreachable!("spline order {order}"),
    }
    w
}

impl Taps {
    fn new(idx: [u32; 4], w: [f64; 4]) -> Taps {
        Taps {
            idx,
            w,
            w32: w.map(|x| x as f32),
        }
    }
}

impl AxisPlan {
    pub fn new(n: usize, m: usize, order: usize) -> AxisPlan {
        assert!(n >= 1 && m >= 1, "axis lengths must be positive");
        assert!(matches!(order, 0 | 1 | 3), "spline order {order}");
        let zoom = n as f64 / m as f64;
        let (pad, line_len) = if order == 3 { (NPAD, n + 2 * NPAD) } else { (0, n) };
        let last = line_len as i64 - 1;
        let clamp = |i: i64| i.clamp(0, last) as u32;
        // fallible: a huge target axis is a MemoryError, not an abort
        let mut taps = crate::mem::with_capacity("resampling plan", m);
        taps.extend((0..m).map(|k| {
            let cc = source_coordinate(k, zoom);
            match order {
                0 => Taps::new([clamp((cc + 0.5).floor() as i64), 0, 0, 0], [1.0, 0.0, 0.0, 0.0]),
                1 => {
                    let s = cc.floor() as i64;
                    Taps::new([clamp(s), clamp(s + 1), 0, 0], spline_weights(cc, 1))
                }
                _ => {
                    let cc = cc + NPAD as f64;
                    let s = cc.floor() as i64 - 1;
                    // with 12 samples of padding every tap lies inside the padded line
                    debug_assert!(s >= 0 && s + 3 <= last);
                    Taps::new(
                        [clamp(s), clamp(s + 1), clamp(s + 2), clamp(s + 3)],
                        spline_weights(cc, 3),
                    )
                }
            }
        }));
        AxisPlan {
            n,
            m,
            order,
            ntaps: order + 1,
            pad,
            line_len,
            taps,
            clamp_taps: false,
        }
    }

    /// The same plan whose order-1 samples are clamped to the range of their two taps.
    ///
    /// In f32 the rounded weights `1 - x` and `x` may sum to 1 + 2^-24, so a sample between
    /// two equal values can come out one ulp above them. Clamped, no pass ever leaves the range
    /// of its input, so a later clip to the volume's range changes nothing and a band of planes
    /// resamples exactly as the whole volume does (the clip bounds of the whole volume are not
    /// needed). Image data only: label indicators keep scipy's unclamped arithmetic.
    pub fn bounded(mut self) -> AxisPlan {
        self.clamp_taps = self.order == 1;
        self
    }

    /// Output samples `[o0, o1)` of this plan, read from a line holding only input samples
    /// `[i0, i0 + n)` of the full one (orders 0 and 1: order 3's prefilter spans the whole line).
    /// Panics if a tap falls outside that window (the caller checks [`AxisPlan::span`]).
    pub fn window(&self, i0: usize, n: usize, o0: usize, o1: usize) -> AxisPlan {
        assert!(self.order <= 1, "a window of an order-{} plan", self.order);
        assert!(
            o0 < o1 && o1 <= self.m && n >= 1 && i0 + n <= self.n,
            "window out of range"
        );
        let mut taps = crate::mem::with_capacity("resampling plan", o1 - o0);
        taps.extend(self.taps[o0..o1].iter().map(|t| {
            let mut t = *t;
            for j in 0..self.ntaps {
                let i = t.idx[j] as usize;
                assert!(i >= i0 && i < i0 + n, "tap {i} outside the window [{i0}, {})", i0 + n);
                t.idx[j] = (i - i0) as u32;
            }
            t
        }));
        AxisPlan {
            n,
            m: o1 - o0,
            order: self.order,
            ntaps: self.ntaps,
            pad: 0,
            line_len: n,
            taps,
            clamp_taps: self.clamp_taps,
        }
    }

    /// The first and last input sample each output sample reads (orders 0 and 1).
    pub fn span(&self) -> Vec<(usize, usize)> {
        self.taps
            .iter()
            .map(|t| {
                let idx = &t.idx[..self.ntaps];
                let lo = idx.iter().copied().min().unwrap_or(0) as usize;
                let hi = idx.iter().copied().max().unwrap_or(0) as usize;
                (lo - self.pad.min(lo), hi - self.pad.min(hi))
            })
            .collect()
    }

    /// The nearest-neighbour plan (order 0) for the same axis.
    pub fn nearest(n: usize, m: usize) -> AxisPlan {
        AxisPlan::new(n, m, 0)
    }

    /// Index of the nearest input sample for every output sample.
    pub fn nearest_indices(n: usize, m: usize) -> Vec<usize> {
        let mut out = crate::mem::with_capacity("resampling plan", m);
        out.extend(AxisPlan::nearest(n, m).taps.iter().map(|t| t.idx[0] as usize));
        out
    }

    /// Pads the loaded samples `line[pad .. pad + n]` (in lanes) with copies of the edge
    /// samples and runs the B-spline prefilter when the order needs one.
    #[inline(always)]
    pub fn prepare<F: Lane, const L: usize>(&self, line: &mut [[F; L]]) {
        if self.order != 3 {
            return;
        }
        let first = line[self.pad];
        let last = line[self.pad + self.n - 1];
        for p in 0..self.pad {
            line[p] = first;
            line[self.pad + self.n + p] = last;
        }
        prefilter_cubic(&mut line[..self.line_len]);
    }

    /// Evaluates output sample `k` from the prepared line.
    #[inline(always)]
    pub fn eval<F: Lane, const L: usize>(&self, line: &[[F; L]], k: usize) -> [F; L] {
        let t = &self.taps[k];
        let ws = F::weights(t);
        let mut acc = [F::ZERO; L];
        for j in 0..self.ntaps {
            let w = ws[j];
            let src = &line[t.idx[j] as usize];
            for l in 0..L {
                acc[l] += w * src[l];
            }
        }
        if self.clamp_taps {
            let (a, b) = (&line[t.idx[0] as usize], &line[t.idx[1] as usize]);
            for l in 0..L {
                let (lo, hi) = if a[l] < b[l] { (a[l], b[l]) } else { (b[l], a[l]) };
                // NaN compares false both ways and stays NaN
                acc[l] = if acc[l] < lo {
                    lo
                } else if acc[l] > hi {
                    hi
                } else {
                    acc[l]
                };
            }
        }
        acc
    }
}

/// scipy's cubic B-spline prefilter (`apply_filter` with one pole and the 'nearest' boundary,
/// which uses the reflect initialisation), on `L` independent lines stored lane-interleaved.
///
/// The causal initialisation sums `z^i` terms over the whole line; terms below
/// `F::NEGLIGIBLE` of the leading one are dropped (for f64: |z|^i < 1e-30 after 53 samples),
/// which changes nothing at the line's precision.
#[inline(always)]
pub(crate) fn prefilter_cubic<F: Lane, const L: usize>(c: &mut [[F; L]]) {
    let n = c.len();
    if n < 2 {
        return;
    }
    let z64 = POLE3;
    let z = F::from_f64(z64);
    let gain = F::from_f64((1.0 - z64) * (1.0 - 1.0 / z64));
    for row in c.iter_mut() {
        for v in row.iter_mut() {
            *v *= gain;
        }
    }
    // causal initialisation (reflect): c0 += z / (1 - z^2n) * sum_i z^i (c_i + z^n c_{n-1-i})
    let zn64 = z64.powi(n as i32);
    let zn = F::from_f64(zn64);
    let mut sum = [F::ZERO; L];
    for l in 0..L {
        sum[l] = c[0][l] + zn * c[n - 1][l];
    }
    let mut zi64 = z64;
    for i in 1..n {
        if zi64.abs() < F::NEGLIGIBLE {
            break;
        }
        let zi = F::from_f64(zi64);
        for l in 0..L {
            sum[l] += zi * (c[i][l] + zn * c[n - 1 - i][l]);
        }
        zi64 *= z64;
    }
    let f = F::from_f64(z64 / (1.0 - zn64 * zn64));
    for l in 0..L {
        c[0][l] += sum[l] * f;
    }
    for i in 1..n {
        let prev = c[i - 1];
        for l in 0..L {
            c[i][l] += z * prev[l];
        }
    }
    // anti-causal initialisation (reflect)
    let f = F::from_f64(z64 / (z64 - 1.0));
    for l in 0..L {
        c[n - 1][l] *= f;
    }
    for i in (0..n - 1).rev() {
        let next = c[i + 1];
        for l in 0..L {
            c[i][l] = z * (next[l] - c[i][l]);
        }
    }
}

/// Resamples one line (scalar convenience used by the rarely taken paths and the tests).
pub(crate) fn resample_line(plan: &AxisPlan, input: &[f64], scratch: &mut Vec<[f64; 1]>, out: &mut [f64]) {
    debug_assert_eq!(input.len(), plan.n);
    debug_assert_eq!(out.len(), plan.m);
    scratch.clear();
    scratch.resize(plan.line_len, [0.0]);
    for (i, &v) in input.iter().enumerate() {
        scratch[plan.pad + i] = [v];
    }
    plan.prepare(scratch);
    for (k, o) in out.iter_mut().enumerate() {
        *o = plan.eval(scratch, k)[0];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resample(input: &[f64], m: usize, order: usize) -> Vec<f64> {
        let plan = AxisPlan::new(input.len(), m, order);
        let mut scratch = Vec::new();
        let mut out = vec![0.0; m];
        resample_line(&plan, input, &mut scratch, &mut out);
        out
    }

    #[test]
    fn constant_lines_stay_constant() {
        for order in [0, 1, 3] {
            for n in [1, 2, 3, 7, 30] {
                for m in [1, 2, 5, 13, 61] {
                    let out = resample(&vec![2.5; n], m, order);
                    for v in out {
                        assert!((v - 2.5).abs() < 1e-12, "order {order} n {n} m {m}: {v}");
                    }
                }
            }
        }
    }

    #[test]
    fn linear_matches_hand_computation() {
        // n = 2 -> m = 6: coordinates (k + 0.5) / 3 - 0.5
        let out = resample(&[0.3, 0.7], 6, 1);
        let expect = [0.3, 0.3, 0.3 + 0.4 / 3.0, 0.7 - 0.4 / 3.0, 0.7, 0.7];
        for (a, b) in out.iter().zip(expect) {
            assert!((a - b).abs() < 1e-12, "{out:?}");
        }
    }

    #[test]
    fn nearest_rounds_half_up() {
        // n = 4 -> m = 2: coordinates 0.5 and 2.5 -> samples 1 and 3
        assert_eq!(AxisPlan::nearest_indices(4, 2), vec![1, 3]);
        assert_eq!(AxisPlan::nearest_indices(1, 3), vec![0, 0, 0]);
    }

    #[test]
    fn cubic_reproduces_samples_at_unit_zoom_and_quadratics() {
        let input: Vec<f64> = (0..20).map(|i| ((i * 7) % 5) as f64 - 1.3).collect();
        let out = resample(&input, 20, 3);
        for (a, b) in out.iter().zip(&input) {
            assert!((a - b).abs() < 1e-12);
        }
        // cubic splines reproduce polynomials of degree <= 3 away from the border
        let input: Vec<f64> = (0..40).map(|i| (i as f64) * (i as f64) * 0.01).collect();
        let out = resample(&input, 80, 3);
        for k in 30..50 {
            let x = (k as f64 + 0.5) * 0.5 - 0.5;
            assert!(
                (out[k] - x * x * 0.01).abs() < 1e-7,
                "k {k}: {} vs {}",
                out[k],
                x * x * 0.01
            );
        }
    }
}
