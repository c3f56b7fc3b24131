//! Sliding-window inference bookkeeping, nnU-Net style (nnU-Net v2 §14):
//!
//! * [`sliding_window_starts`]: the window start positions per axis
//!   (`nnunetv2.inference.sliding_window_prediction.compute_steps_for_sliding_window`);
//! * [`gaussian_importance_map`]: the Gaussian weight of a window (`compute_gaussian`), built
//!   separably as the outer product of 1-D profiles;
//! * [`Aggregator`]: accumulation of weighted window predictions over a volume, normalisation,
//!   argmax, and a streaming mode that hands finished slabs back with bounded memory.

mod aggregator;
mod planes;
mod rows;

pub use aggregator::{
    AccDtype, Aggregator, AggregatorConfig, Output, Prediction, Slab, SlabData, Uncovered, Weighting,
};

use half::f16;
use ndarray::{ArrayD, IxDyn};

use crate::{KernelError, KernelResult};

/// Window start positions along every axis, nnU-Net's rule exactly.
///
/// Per axis: target step `patch × step_size`; `n = ceil((size − patch) / target) + 1` windows;
/// actual step `(size − patch) / (n − 1)`; starts `round_half_even(actual × i)`. The first
/// window starts at 0 and the last one ends flush with the image.
pub fn sliding_window_starts(
    image_size: &[usize],
    patch_size: &[usize],
    step_size: f64,
) -> KernelResult<Vec<Vec<usize>>> {
    if patch_size.len() != image_size.len() {
        return Err(KernelError::shape(
            "patch_size",
            format!(
                "has {} values but image_size has {}",
                patch_size.len(),
                image_size.len()
            ),
        ));
    }
    if patch_size.contains(&0) {
        return Err(KernelError::invalid(
            "patch_size",
            format!("every value must be >= 1, got {patch_size:?}"),
        ));
    }
    if !(step_size > 0.0 && step_size <= 1.0) {
        return Err(KernelError::invalid(
            "step_size",
            format!("must be in (0, 1], got {step_size}"),
        ));
    }
    if image_size.iter().zip(patch_size).any(|(&i, &p)| i < p) {
        return Err(KernelError::invalid(
            "image_size",
            format!(
                "{image_size:?} is smaller than patch_size {patch_size:?} along some axis (pad the image to at least the patch size first)"
            ),
        ));
    }
    image_size
        .iter()
        .zip(patch_size)
        .map(|(&size, &patch)| axis_starts(size, patch, step_size))
        .collect()
}

fn axis_starts(size: usize, patch: usize, step_size: f64) -> KernelResult<Vec<usize>> {
    let target = patch as f64 * step_size;
    let span = size - patch;
    // saturating: an absurd image size becomes a MemoryError below, not a wrapped count
    let n = (((span as f64) / target).ceil() as usize).saturating_add(1);
    if n == 1 {
        return Ok(vec![0]);
    }
    let actual = span as f64 / (n - 1) as f64;
    let mut out = crate::mem::try_with_capacity("window starts", n)?;
    out.extend((0..n).map(|i| (actual * i as f64).round_ties_even() as usize));
    Ok(out)
}

/// scipy's `gaussian_filter(delta, sigma, mode="constant", truncate=4)` along one axis of
/// length `p` with the delta at `p // 2`: the normalised kernel, centred, cut at the radius.
fn gaussian_profile(p: usize, sigma: f64) -> KernelResult<Vec<f64>> {
    let center = p / 2;
    let mut out: Vec<f64> = crate::mem::try_zeroed("gaussian profile", p)?;
    if sigma.partial_cmp(&1e-15) != Some(std::cmp::Ordering::Greater) {
        // scipy skips axes whose sigma is <= 1e-15: the delta stays a delta.
        out[center] = 1.0;
        return Ok(out);
    }
    let radius = (4.0 * sigma + 0.5) as usize;
    let coef = -0.5 / (sigma * sigma);
    let taps = radius
        .checked_mul(2)
        .and_then(|t| t.checked_add(1))
        .ok_or_else(|| KernelError::invalid("sigma_scale", format!("a sigma of {sigma} is too large")))?;
    let mut phi: Vec<f64> = crate::mem::try_with_capacity("gaussian kernel", taps)?;
    phi.extend((0..taps).map(|k| {
        let x = k as f64 - radius as f64;
        (coef * (x * x)).exp()
    }));
    let sum: f64 = phi.iter().sum();
    for (i, o) in out.iter_mut().enumerate() {
        let d = i.abs_diff(center);
        if d <= radius {
            *o = phi[radius + d] / sum;
        }
    }
    Ok(out)
}

/// Element types the importance map can be produced in.
pub trait MapElem: Copy + Send + Sync + 'static {
    fn from_f64(v: f64) -> Self;
    fn is_zero(self) -> bool;
    fn lt(self, other: Self) -> bool;
}

impl MapElem for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn is_zero(self) -> bool {
        self == 0.0
    }
    fn lt(self, other: Self) -> bool {
        self < other
    }
}

impl MapElem for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn is_zero(self) -> bool {
        self == 0.0
    }
    fn lt(self, other: Self) -> bool {
        self < other
    }
}

impl MapElem for f16 {
    /// Through float32 like torch's `Tensor.to(float16)` from float64.
    fn from_f64(v: f64) -> Self {
        f16::from_f32(v as f32)
    }
    fn is_zero(self) -> bool {
        self.to_f32() == 0.0
    }
    fn lt(self, other: Self) -> bool {
        self.to_f32() < other.to_f32()
    }
}

/// nnU-Net's Gaussian importance map (`compute_gaussian`) of shape `patch_size`.
///
/// A delta at `p // 2` blurred with σ = `p × sigma_scale` per axis (scipy semantics: mode
/// constant, truncate 4), scaled so the maximum is `value_scaling_factor`, computed in float64,
/// cast to `T`, and every zero replaced by the smallest non-zero value. The blur of a delta is
/// separable, so the map is the outer product of 1-D profiles, multiplied in scipy's axis order.
pub fn gaussian_importance_map<T: MapElem>(
    patch_size: &[usize],
    sigma_scale: f64,
    value_scaling_factor: f64,
) -> KernelResult<ArrayD<T>> {
    if patch_size.is_empty() {
        return Err(KernelError::shape("patch_size", "needs at least one axis"));
    }
    if patch_size.contains(&0) {
        return Err(KernelError::invalid(
            "patch_size",
            format!("every value must be >= 1, got {patch_size:?}"),
        ));
    }
    if !(sigma_scale.is_finite() && sigma_scale > 0.0) {
        return Err(KernelError::invalid(
            "sigma_scale",
            format!("must be positive and finite, got {sigma_scale}"),
        ));
    }
    if !(value_scaling_factor.is_finite() && value_scaling_factor > 0.0) {
        return Err(KernelError::invalid(
            "value_scaling_factor",
            format!("must be positive and finite, got {value_scaling_factor}"),
        ));
    }
    let n = crate::mem::elements("patch_size", patch_size)?;
    crate::mem::bytes_of::<f64>("patch_size", n)?;
    let profiles: Vec<Vec<f64>> = patch_size
        .iter()
        .map(|&p| gaussian_profile(p, p as f64 * sigma_scale))
        .collect::<KernelResult<_>>()?;
    let max = profiles
        .iter()
        .zip(patch_size)
        .fold(1.0f64, |acc, (g, &p)| acc * g[p / 2]);
    let divisor = max / value_scaling_factor;

    // Row-major outer product, multiplied axis after axis like scipy's successive 1-D
    // filters: the products over all axes but the last, then one row per product.
    let last = profiles.last().expect("at least one axis");
    let mut data: Vec<T> = crate::mem::try_with_capacity("gaussian importance map", n)?;
    let mut prefix: Vec<f64> = vec![1.0];
    for g in &profiles[..profiles.len() - 1] {
        let mut next = crate::mem::try_with_capacity("gaussian importance map", prefix.len() * g.len())?;
        next.extend(prefix.iter().flat_map(|&a| g.iter().map(move |&b| a * b)));
        prefix = next;
    }
    for &p in &prefix {
        data.extend(last.iter().map(|&g| T::from_f64(p * g / divisor)));
    }
    let mut min_nonzero: Option<T> = None;
    for &v in &data {
        if !v.is_zero() && min_nonzero.is_none_or(|m| v.lt(m)) {
            min_nonzero = Some(v);
        }
    }
    if let Some(m) = min_nonzero {
        for v in data.iter_mut().filter(|v| v.is_zero()) {
            *v = m;
        }
    }
    Ok(ArrayD::from_shape_vec(IxDyn(patch_size), data).expect("shape matches the data length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_match_nnunet_examples() {
        assert_eq!(
            sliding_window_starts(&[110], &[64], 0.5).unwrap(),
            vec![vec![0, 23, 46]]
        );
        assert_eq!(
            sliding_window_starts(&[160, 320, 320], &[128, 128, 128], 0.5).unwrap(),
            vec![vec![0, 32], vec![0, 64, 128, 192], vec![0, 64, 128, 192]]
        );
        assert_eq!(sliding_window_starts(&[64], &[64], 0.5).unwrap(), vec![vec![0]]);
        assert_eq!(sliding_window_starts(&[65], &[64], 1.0).unwrap(), vec![vec![0, 1]]);
        assert_eq!(sliding_window_starts(&[9], &[4], 0.5).unwrap(), vec![vec![0, 2, 3, 5]]);
        // ties round to even like np.round: span 5 in 2 steps of 2.5 -> 0, 2, 5
        assert_eq!(sliding_window_starts(&[9], &[4], 0.625).unwrap(), vec![vec![0, 2, 5]]);
    }

    #[test]
    fn starts_reject_bad_input() {
        let e = sliding_window_starts(&[10], &[64], 0.5).unwrap_err();
        assert!(e.to_string().starts_with("image_size"));
        let e = sliding_window_starts(&[100], &[64], 0.0).unwrap_err();
        assert!(e.to_string().starts_with("step_size"));
        let e = sliding_window_starts(&[100], &[64], 1.5).unwrap_err();
        assert!(e.to_string().starts_with("step_size"));
        let e = sliding_window_starts(&[100, 3], &[64], 0.5).unwrap_err();
        assert!(e.to_string().starts_with("patch_size"));
    }

    #[test]
    fn gaussian_is_separable_and_scaled() {
        let g = gaussian_importance_map::<f32>(&[5, 6, 7], 0.125, 10.0).unwrap();
        assert_eq!(g.shape(), &[5, 6, 7]);
        assert!((g[[2, 3, 3]] - 10.0).abs() < 1e-6);
        let max = g.iter().cloned().fold(f32::MIN, f32::max);
        assert_eq!(max, g[[2, 3, 3]]);
        assert!(g.iter().all(|&v| v > 0.0));
        // product structure: g[i,j,k] * g[c] == g[i,c,c] * g[c,j,k] (up to rounding)
        let (a, b) = (g[[0, 1, 5]] * g[[2, 3, 3]], g[[0, 3, 3]] * g[[2, 1, 5]]);
        assert!((a - b).abs() <= 1e-5 * a.abs());
    }

    #[test]
    fn gaussian_f16_has_no_zeros() {
        let g = gaussian_importance_map::<f16>(&[64, 64, 64], 0.125, 10.0).unwrap();
        assert!(g.iter().all(|v| v.to_f32() > 0.0));
        assert_eq!(g[[32, 32, 32]].to_f32(), 10.0);
    }
}
