//! Row kernels of the aggregator: the innermost loops over one contiguous row of voxels.
//!
//! Arithmetic is float32 throughout (`acc + pred × weight`, multiply then add, never fused),
//! so the float32 accumulator matches a plain numpy accumulation bit for bit; the float16
//! accumulator rounds every sum back to float16 (round to nearest even), which is what torch
//! does for nnU-Net's `fp16_logits[sl] += fp32_prediction`.

use half::f16;
use ndarray::ArrayView1;

/// Element type of the accumulators (float32 or float16).
pub(crate) trait AccElem: crate::mem::Zeroable + Send + Sync + 'static {
    /// `acc[i] = acc[i] + pred[i] * w[i]`
    fn accumulate(acc: &mut [Self], pred: &[f32], w: &[f32]);
    /// `acc[i] = acc[i] + v[i]`
    fn add(acc: &mut [Self], v: &[f32]);
    /// `dst[i] = src[i] as f32`
    fn load(src: &[Self], dst: &mut [f32]);
    /// Borrow `src` as f32 directly when it is f32, else convert into `buf`.
    fn as_f32<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32];
    fn fill_zero(dst: &mut [Self]);
}

impl AccElem for f32 {
    #[inline]
    fn accumulate(acc: &mut [f32], pred: &[f32], w: &[f32]) {
        let n = acc.len();
        let (pred, w) = (&pred[..n], &w[..n]);
        for i in 0..n {
            acc[i] += pred[i] * w[i];
        }
    }
    #[inline]
    fn add(acc: &mut [f32], v: &[f32]) {
        let n = acc.len();
        let v = &v[..n];
        for i in 0..n {
            acc[i] += v[i];
        }
    }
    #[inline]
    fn load(src: &[f32], dst: &mut [f32]) {
        dst[..src.len()].copy_from_slice(src);
    }
    #[inline]
    fn as_f32<'a>(src: &'a [f32], _buf: &'a mut [f32]) -> &'a [f32] {
        src
    }
    fn fill_zero(dst: &mut [f32]) {
        dst.fill(0.0);
    }
}

impl AccElem for f16 {
    #[inline]
    fn accumulate(acc: &mut [f16], pred: &[f32], w: &[f32]) {
        let n = acc.len();
        let (pred, w) = (&pred[..n], &w[..n]);
        let done = simd::accumulate_f16(acc, pred, w);
        for i in done..n {
            acc[i] = f16::from_f32(acc[i].to_f32() + pred[i] * w[i]);
        }
    }
    #[inline]
    fn add(acc: &mut [f16], v: &[f32]) {
        let n = acc.len();
        let v = &v[..n];
        let done = simd::add_f16(acc, v);
        for i in done..n {
            acc[i] = f16::from_f32(acc[i].to_f32() + v[i]);
        }
    }
    #[inline]
    fn load(src: &[f16], dst: &mut [f32]) {
        let n = src.len();
        let dst = &mut dst[..n];
        let done = simd::load_f16(src, dst);
        for i in done..n {
            dst[i] = src[i].to_f32();
        }
    }
    #[inline]
    fn as_f32<'a>(src: &'a [f16], buf: &'a mut [f32]) -> &'a [f32] {
        Self::load(src, buf);
        &buf[..src.len()]
    }
    fn fill_zero(dst: &mut [f16]) {
        dst.fill(f16::ZERO);
    }
}

/// Element type of a prediction as handed in (float32, float16, or bfloat16 as raw bits).
pub(crate) trait PredElem: Copy + Send + Sync + 'static {
    /// The row as f32: borrowed when it is contiguous float32, else converted into `buf`
    /// (which must be at least as long as the row).
    fn row_f32<'a>(row: ArrayView1<'a, Self>, buf: &'a mut [f32]) -> &'a [f32];
}

impl PredElem for f32 {
    #[inline]
    fn row_f32<'a>(row: ArrayView1<'a, f32>, buf: &'a mut [f32]) -> &'a [f32] {
        if let Some(s) = row.to_slice() {
            return s;
        }
        let n = row.len();
        for (b, &v) in buf[..n].iter_mut().zip(row.iter()) {
            *b = v;
        }
        &buf[..n]
    }
}

impl PredElem for f16 {
    #[inline]
    fn row_f32<'a>(row: ArrayView1<'a, f16>, buf: &'a mut [f32]) -> &'a [f32] {
        let n = row.len();
        if let Some(s) = row.to_slice() {
            <f16 as AccElem>::load(s, buf);
        } else {
            for (b, &v) in buf[..n].iter_mut().zip(row.iter()) {
                *b = v.to_f32();
            }
        }
        &buf[..n]
    }
}

/// bfloat16 as its raw 16 bits (what `tensor.view(torch.int16).numpy()` gives).
#[inline]
fn bf16_bits_to_f32(b: i16) -> f32 {
    f32::from_bits(((b as u16) as u32) << 16)
}

impl PredElem for i16 {
    #[inline]
    fn row_f32<'a>(row: ArrayView1<'a, i16>, buf: &'a mut [f32]) -> &'a [f32] {
        let n = row.len();
        if let Some(s) = row.to_slice() {
            for (b, &v) in buf[..n].iter_mut().zip(s) {
                *b = bf16_bits_to_f32(v);
            }
        } else {
            for (b, &v) in buf[..n].iter_mut().zip(row.iter()) {
                *b = bf16_bits_to_f32(v);
            }
        }
        &buf[..n]
    }
}

/// float16 loops with F16C conversions (8 lanes) where the CPU has them. Each function
/// handles a multiple-of-8 prefix and returns its length; the caller does the tail.
mod simd {
    use half::f16;

    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn has_f16c() -> bool {
        std::arch::is_x86_feature_detected!("f16c") && std::arch::is_x86_feature_detected!("avx")
    }

    pub(super) fn accumulate_f16(acc: &mut [f16], pred: &[f32], w: &[f32]) -> usize {
        #[cfg(target_arch = "x86_64")]
        if has_f16c() {
            // SAFETY: the CPU supports the features; lengths are checked inside.
            return unsafe { x86::accumulate(acc, pred, w) };
        }
        let _ = (acc, pred, w);
        0
    }

    pub(super) fn add_f16(acc: &mut [f16], v: &[f32]) -> usize {
        #[cfg(target_arch = "x86_64")]
        if has_f16c() {
            // SAFETY: as above.
            return unsafe { x86::add(acc, v) };
        }
        let _ = (acc, v);
        0
    }

    pub(super) fn load_f16(src: &[f16], dst: &mut [f32]) -> usize {
        #[cfg(target_arch = "x86_64")]
        if has_f16c() {
            // SAFETY: as above.
            return unsafe { x86::load(src, dst) };
        }
        let _ = (src, dst);
        0
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use half::f16;
        use std::arch::x86_64::*;

        // round to nearest even
        const RNE: i32 = _MM_FROUND_TO_NEAREST_INT;

        #[target_feature(enable = "avx,f16c")]
        pub(super) unsafe fn accumulate(acc: &mut [f16], pred: &[f32], w: &[f32]) -> usize {
            let n = acc.len().min(pred.len()).min(w.len()) / 8 * 8;
            let (a, p, g) = (acc.as_mut_ptr() as *mut u16, pred.as_ptr(), w.as_ptr());
            let mut i = 0;
            while i < n {
                // SAFETY: `i + 8 <= n`, and `n` is at most every slice's length rounded down to
                // a multiple of 8, so the 8-lane loads and stores stay inside the slices; the
                // caller checked the CPU features this function is compiled for.
                unsafe {
                    let av = _mm256_cvtph_ps(_mm_loadu_si128(a.add(i) as *const __m128i));
                    let pv = _mm256_loadu_ps(p.add(i));
                    let gv = _mm256_loadu_ps(g.add(i));
                    let r = _mm256_add_ps(av, _mm256_mul_ps(pv, gv));
                    _mm_storeu_si128(a.add(i) as *mut __m128i, _mm256_cvtps_ph::<RNE>(r));
                }
                i += 8;
            }
            n
        }

        #[target_feature(enable = "avx,f16c")]
        pub(super) unsafe fn add(acc: &mut [f16], v: &[f32]) -> usize {
            let n = acc.len().min(v.len()) / 8 * 8;
            let (a, p) = (acc.as_mut_ptr() as *mut u16, v.as_ptr());
            let mut i = 0;
            while i < n {
                // SAFETY: `i + 8 <= n`, and `n` is at most every slice's length rounded down to
                // a multiple of 8, so the 8-lane loads and stores stay inside the slices; the
                // caller checked the CPU features this function is compiled for.
                unsafe {
                    let av = _mm256_cvtph_ps(_mm_loadu_si128(a.add(i) as *const __m128i));
                    let r = _mm256_add_ps(av, _mm256_loadu_ps(p.add(i)));
                    _mm_storeu_si128(a.add(i) as *mut __m128i, _mm256_cvtps_ph::<RNE>(r));
                }
                i += 8;
            }
            n
        }

        #[target_feature(enable = "avx,f16c")]
        pub(super) unsafe fn load(src: &[f16], dst: &mut [f32]) -> usize {
            let n = src.len().min(dst.len()) / 8 * 8;
            let (s, d) = (src.as_ptr() as *const u16, dst.as_mut_ptr());
            let mut i = 0;
            while i < n {
                // SAFETY: `i + 8 <= n`, and `n` is at most every slice's length rounded down to
                // a multiple of 8, so the 8-lane loads and stores stay inside the slices; the
                // caller checked the CPU features this function is compiled for.
                unsafe {
                    let v = _mm256_cvtph_ps(_mm_loadu_si128(s.add(i) as *const __m128i));
                    _mm256_storeu_ps(d.add(i), v);
                }
                i += 8;
            }
            n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_kernels_match_scalar_rounding() {
        let n = 37;
        let pred: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let w: Vec<f32> = (0..n).map(|i| 0.1 + i as f32 * 0.25).collect();
        let mut acc: Vec<f16> = (0..n).map(|i| f16::from_f32(i as f32 * 0.013)).collect();
        let expect: Vec<f16> = acc
            .iter()
            .zip(&pred)
            .zip(&w)
            .map(|((a, p), g)| f16::from_f32(a.to_f32() + p * g))
            .collect();
        <f16 as AccElem>::accumulate(&mut acc, &pred, &w);
        assert_eq!(acc, expect);
        let expect: Vec<f16> = acc.iter().zip(&w).map(|(a, g)| f16::from_f32(a.to_f32() + g)).collect();
        <f16 as AccElem>::add(&mut acc, &w);
        assert_eq!(acc, expect);
        let mut out = vec![0f32; n];
        <f16 as AccElem>::load(&acc, &mut out);
        assert!(out.iter().zip(&acc).all(|(o, a)| *o == a.to_f32()));
        let z = crate::mem::try_zeroed::<f16>("z", 100).unwrap();
        assert!(z.iter().all(|v| v.to_f32() == 0.0));
    }

    #[test]
    fn bf16_bits_convert() {
        let v = half::bf16::from_f32(-1.5);
        assert_eq!(bf16_bits_to_f32(v.to_bits() as i16), -1.5);
    }
}
