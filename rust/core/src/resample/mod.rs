//! nnU-Net's default resampling (`resample_data_or_seg_to_shape`), separable and parallel.
//!
//! * [`resample_data`]: images / probabilities, float16/32/64, spline order 0, 1 or 3, with
//!   scikit-image's `resize(mode='edge', anti_aliasing=False)` semantics (scipy `zoom` with
//!   `grid_mode=True, mode='nearest'`, B-spline prefilter on an edge-padded copy, result
//!   clipped to the input's range).
//! * [`resample_seg`]: label maps, argmax of interpolated label indicators with the
//!   nearest-neighbour tie-break (batchgenerators 0.25.5 `resize_segmentation`).
//!
//! Both follow nnU-Net's separate-z rule for anisotropic spacings (see
//! [`separate_z_axis`]): slices orthogonal to the low-resolution axis are resized in plane at
//! `order`, then that axis alone at `order_z`.
//!
//! Arrays are channel first, `(c, x, y, z)` or `(c, x, y)`. The work is done axis by axis
//! (tensor-product B-splines are separable): blocks of lines of one axis in scratch lines
//! (f32 for f32 input and for f16 at orders 0/1, f64 otherwise), intermediates in f32 for
//! f16/f32 input (f64 for f64), axes 1 and 2 fused slice by slice, the axis that shrinks most
//! first, channels one after the other, blocks in parallel. Results agree with scipy to
//! rounding (data) and exactly (segmentations at orders 0/1, whose label scores are formed
//! with scipy's own products and summation order).

mod pass;
mod plan;
mod seg;

use ndarray::{ArrayD, ArrayView3, ArrayView4, ArrayViewD, Axis, IxDyn};

pub use crate::mem::Zeroable;
use crate::{KernelError, KernelResult};
pub use pass::Sample;
use pass::{axis_pass, chain, gather_axis, min_max, uninit_vec, Clip, Vol};
use plan::AxisPlan;
pub use plan::Lane;
pub use seg::Label;
use seg::{argmax_general, onepass, threshold_axis, SegAxis};

/// nnU-Net's `ANISO_THRESHOLD`: spacing ratios above it trigger the separate-z path.
pub const ANISO_THRESHOLD: f64 = 3.0;

fn lowres_axes(spacing: &[f64]) -> Vec<usize> {
    let m = spacing.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (0..spacing.len()).filter(|&i| m / spacing[i] == 1.0).collect()
}

fn anisotropic(spacing: &[f64]) -> bool {
    let max = spacing.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = spacing.iter().copied().fold(f64::INFINITY, f64::min);
    max / min > ANISO_THRESHOLD
}

/// The axis resampled separately (nnU-Net's `determine_do_sep_z_and_axis`), or None.
///
/// With `force = None` the current spacing decides when `max/min > 3`, else the new spacing;
/// the axis is the one with the largest spacing, and a tie for the largest spacing disables
/// the separate path. `Some(true)` forces the current spacing's largest axis (tie rule still
/// applies), `Some(false)` disables it.
pub fn separate_z_axis(current_spacing: &[f64], new_spacing: &[f64], force: Option<bool>) -> Option<usize> {
    let axes = match force {
        Some(false) => return None,
        Some(true) => lowres_axes(current_spacing),
        None if anisotropic(current_spacing) => lowres_axes(current_spacing),
        None if anisotropic(new_spacing) => lowres_axes(new_spacing),
        None => return None,
    };
    if axes.len() == 1 {
        Some(axes[0])
    } else {
        None
    }
}

fn check_order(arg: &'static str, order: usize) -> KernelResult<()> {
    if matches!(order, 0 | 1 | 3) {
        Ok(())
    } else {
        Err(KernelError::invalid(
            arg,
            format!("spline order must be 0, 1 or 3, got {order}"),
        ))
    }
}

fn check_spacing(arg: &'static str, spacing: &[f64], n: usize) -> KernelResult<()> {
    if spacing.len() != n {
        return Err(KernelError::shape(
            arg,
            format!("expected {n} values, got {}", spacing.len()),
        ));
    }
    if !spacing.iter().all(|s| s.is_finite() && *s > 0.0) {
        return Err(KernelError::invalid(
            arg,
            format!("every spacing must be positive and finite, got {spacing:?}"),
        ));
    }
    Ok(())
}

fn check_args(
    name: &'static str,
    shape: &[usize],
    new_shape: &[usize],
    current_spacing: &[f64],
    new_spacing: &[f64],
    order: usize,
    order_z: usize,
) -> KernelResult<()> {
    if !(shape.len() == 3 || shape.len() == 4) {
        return Err(KernelError::shape(
            name,
            format!("expected 3 or 4 dimensions (c, x, y[, z]), got shape {shape:?}"),
        ));
    }
    if shape[1..].contains(&0) {
        return Err(KernelError::shape(
            name,
            format!("every spatial axis needs at least one voxel, got shape {shape:?}"),
        ));
    }
    let nsp = shape.len() - 1;
    if new_shape.len() != nsp {
        return Err(KernelError::shape(
            "new_shape",
            format!("expected {nsp} values, got {}", new_shape.len()),
        ));
    }
    if new_shape.contains(&0) {
        return Err(KernelError::invalid(
            "new_shape",
            format!("every value must be >= 1, got {new_shape:?}"),
        ));
    }
    // the output and the float64 intermediates must be addressable (overflow is the
    // caller's target, named as such; a merely huge target fails later as MemoryError)
    let mut out_dims = vec![shape[0]];
    out_dims.extend_from_slice(new_shape);
    crate::mem::bytes_of::<f64>("new_shape", crate::mem::elements("new_shape", &out_dims)?)?;
    check_spacing("current_spacing", current_spacing, nsp)?;
    check_spacing("new_spacing", new_spacing, nsp)?;
    check_order("order", order)?;
    check_order("order_z", order_z)
}

/// Normalises to 4-D `(c, X, Y, Z)`: a 2-D input `(c, x, y)` gets a unit axis 1.
struct Layout {
    odims: [usize; 3],
    sep: Option<usize>,
}

fn layout(ndim: usize, new_shape: &[usize], sep: Option<usize>) -> Layout {
    if ndim == 4 {
        Layout {
            odims: [new_shape[0], new_shape[1], new_shape[2]],
            sep,
        }
    } else {
        Layout {
            odims: [1, new_shape[0], new_shape[1]],
            sep: sep.map(|a| a + 1),
        }
    }
}

fn as4<T>(v: ArrayViewD<'_, T>) -> ArrayView4<'_, T> {
    let v = if v.ndim() == 3 { v.insert_axis(Axis(1)) } else { v };
    v.into_dimensionality().expect("3 or 4 dimensions checked")
}

/// Axes whose length changes, the most shrinking (smallest new/old ratio) first.
fn changed_axes(idims: [usize; 3], odims: [usize; 3], skip: Option<usize>) -> Vec<usize> {
    let mut axes: Vec<usize> = (0..3).filter(|&a| Some(a) != skip && idims[a] != odims[a]).collect();
    let ratio = |a: usize| odims[a] as f64 / idims[a] as f64;
    axes.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)));
    axes
}

/// Resamples image data `(c, x, y, z)` / `(c, x, y)` to `new_shape` with nnU-Net's semantics
/// (`resample_data_or_seg_to_shape(..., is_seg=False)`). See the module docs.
///
/// An unchanged shape gives a copy (the Python wrapper returns the input object itself).
pub fn resample_data<T: Sample>(
    data: ArrayViewD<'_, T>,
    new_shape: &[usize],
    current_spacing: &[f64],
    new_spacing: &[f64],
    order: usize,
    order_z: usize,
    force_separate_z: Option<bool>,
) -> KernelResult<ArrayD<T>> {
    resample_channels(
        "data",
        data,
        new_shape,
        current_spacing,
        new_spacing,
        order,
        order_z,
        force_separate_z,
        |ch, lay, dst| {
            if T::F32_LINES_UP_TO_ORDER_1 && order <= 1 && order_z <= 1 {
                data_channel::<T, f32>(ch, lay.odims, lay.sep, order, order_z, dst);
            } else {
                data_channel::<T, T::Scratch>(ch, lay.odims, lay.sep, order, order_z, dst);
            }
        },
    )
}

/// The shared driver of [`resample_data`] and [`resample_seg`]: checks the arguments, returns a
/// copy for an unchanged shape, and resamples each channel into its slice of one output buffer.
#[allow(clippy::too_many_arguments)]
fn resample_channels<T: Copy + Zeroable>(
    arg: &'static str,
    input: ArrayViewD<'_, T>,
    new_shape: &[usize],
    current_spacing: &[f64],
    new_spacing: &[f64],
    order: usize,
    order_z: usize,
    force_separate_z: Option<bool>,
    channel: impl Fn(ArrayView3<'_, T>, &Layout, &mut [T]),
) -> KernelResult<ArrayD<T>> {
    check_args(
        arg,
        input.shape(),
        new_shape,
        current_spacing,
        new_spacing,
        order,
        order_z,
    )?;
    let nc = input.shape()[0];
    let mut oshape = vec![nc];
    oshape.extend_from_slice(new_shape);
    if &input.shape()[1..] == new_shape {
        return Ok(input.to_owned());
    }
    let lay = layout(
        input.ndim(),
        new_shape,
        separate_z_axis(current_spacing, new_spacing, force_separate_z),
    );
    let v4 = as4(input);
    let per: usize = lay.odims.iter().product();
    let mut out: Vec<T> = crate::mem::try_zeroed("resampled output", nc * per)?;
    for (c, dst) in out.chunks_mut(per.max(1)).enumerate().take(nc) {
        channel(v4.index_axis(Axis(0), c), &lay, dst);
    }
    Ok(ArrayD::from_shape_vec(IxDyn(&oshape), out).expect("output length"))
}

fn data_channel<T: Sample, F: Lane>(
    src: ArrayView3<'_, T>,
    odims: [usize; 3],
    sep: Option<usize>,
    order: usize,
    order_z: usize,
    dst: &mut [T],
) {
    let vol = Vol::from_view(&src);
    let idims = vol.dims;
    let plans: Vec<AxisPlan> = (0..3).map(|a| AxisPlan::new(idims[a], odims[a], order)).collect();
    let steps_for = |axes: &[usize]| -> Vec<(usize, &AxisPlan)> { axes.iter().map(|&a| (a, &plans[a])).collect() };
    let Some(a) = sep else {
        let steps = steps_for(&changed_axes(idims, odims, None));
        let (lo, hi) = min_max(&vol, None)[0];
        chain::<_, T::Work, T, F>(&vol, &steps, dst, &Clip::All(lo, hi));
        return;
    };
    let inplane = changed_axes(idims, odims, Some(a));
    let steps = steps_for(&inplane);
    let z_changes = idims[a] != odims[a];
    if inplane.is_empty() {
        // only the separate axis changes: the in-plane "resize" is a copy, nothing is clipped
        if order_z == 0 {
            gather_axis(&vol, a, &AxisPlan::nearest_indices(idims[a], odims[a]), dst);
        } else {
            axis_pass::<F, _, _>(&vol, a, &AxisPlan::new(idims[a], odims[a], order_z), dst, &Clip::None);
        }
        return;
    }
    // every slice along `a` is clipped to its own range
    let bounds = min_max(&vol, Some(a));
    if !z_changes {
        chain::<_, T::Work, T, F>(&vol, &steps, dst, &Clip::AlongAxis { axis: a, bounds });
        return;
    }
    let mut mid = odims;
    mid[a] = idims[a];
    if order_z == 0 {
        let nn = AxisPlan::nearest_indices(idims[a], odims[a]);
        if odims[a] < idims[a] {
            // fewer slices out than in: pick them first, resize only those
            let mut sdims = idims;
            sdims[a] = odims[a];
            let mut picked: Vec<T> = uninit_vec(sdims.iter().product());
            gather_axis(&vol, a, &nn, &mut picked);
            let bounds = nn.iter().map(|&j| bounds[j]).collect();
            let pvol = Vol::from_slice(&picked, sdims);
            chain::<_, T::Work, T, F>(&pvol, &steps, dst, &Clip::AlongAxis { axis: a, bounds });
        } else {
            let mut inplane_out: Vec<T> = uninit_vec(mid.iter().product());
            chain::<_, T::Work, T, F>(&vol, &steps, &mut inplane_out, &Clip::AlongAxis { axis: a, bounds });
            gather_axis(&Vol::from_slice(&inplane_out, mid), a, &nn, dst);
        }
    } else {
        let mut inplane_out: Vec<T::Work> = uninit_vec(mid.iter().product());
        chain::<_, T::Work, T::Work, F>(&vol, &steps, &mut inplane_out, &Clip::AlongAxis { axis: a, bounds });
        let zplan = AxisPlan::new(idims[a], odims[a], order_z);
        axis_pass::<F, _, _>(&Vol::from_slice(&inplane_out, mid), a, &zplan, dst, &Clip::None);
    }
}

/// Resamples a label map `(c, x, y, z)` / `(c, x, y)` to `new_shape` with nnU-Net's semantics
/// (`resample_data_or_seg_to_shape(..., is_seg=True)` with batchgenerators 0.25.5).
///
/// Order 0 is nearest neighbour; orders 1 and 3 take the per-voxel argmax of the interpolated
/// label indicators (order 1 in one pass over the output, order 3 one separable resize per
/// label), exact ties going to the nearest-neighbour label when it is among the best, else to
/// the smallest tied label. On the separate-z path `order_z = 0` is nearest along that axis;
/// `order_z` 1 or 3 writes each label (ascending) where its interpolated indicator exceeds
/// 0.5, other voxels 0 (nnU-Net's rule).
pub fn resample_seg<L: Label>(
    seg: ArrayViewD<'_, L>,
    new_shape: &[usize],
    current_spacing: &[f64],
    new_spacing: &[f64],
    order: usize,
    order_z: usize,
    force_separate_z: Option<bool>,
) -> KernelResult<ArrayD<L>> {
    resample_channels(
        "seg",
        seg,
        new_shape,
        current_spacing,
        new_spacing,
        order,
        order_z,
        force_separate_z,
        |ch, lay, dst| seg_channel(ch, lay.odims, lay.sep, order, order_z, dst),
    )
}

fn seg_channel<L: Label>(
    src: ArrayView3<'_, L>,
    odims: [usize; 3],
    sep: Option<usize>,
    order: usize,
    order_z: usize,
    dst: &mut [L],
) {
    let vol = Vol::from_view(&src);
    let idims = vol.dims;
    // the in-plane (or full, without separate axis) resize into `out` whose dims are `dims`
    let resize = |dims: [usize; 3], out: &mut [L]| {
        if order == 3 {
            let plans: Vec<AxisPlan> = (0..3).map(|a| AxisPlan::new(idims[a], dims[a], 3)).collect();
            let steps: Vec<(usize, &AxisPlan)> = changed_axes(idims, dims, None)
                .into_iter()
                .map(|a| (a, &plans[a]))
                .collect();
            let nn = [0, 1, 2].map(|a| AxisPlan::nearest_indices(idims[a], dims[a]));
            argmax_general(&vol, &steps, &nn, out);
        } else {
            let axes = [0, 1, 2].map(|a| SegAxis::for_order(idims[a], dims[a], order));
            onepass(&vol, &axes, out);
        }
    };
    let Some(a) = sep else {
        resize(odims, dst);
        return;
    };
    let z_changes = idims[a] != odims[a];
    if order != 3 && order_z == 0 && odims[a] <= idims[a] {
        // nearest along the separate axis folds into the one-pass kernel
        let axes = [0, 1, 2].map(|b| {
            if b == a {
                SegAxis::nearest(idims[b], odims[b])
            } else {
                SegAxis::for_order(idims[b], odims[b], order)
            }
        });
        onepass(&vol, &axes, dst);
        return;
    }
    let mut mid = odims;
    mid[a] = idims[a];
    if !z_changes {
        resize(mid, dst);
        return;
    }
    let mut inplane_out: Vec<L> = uninit_vec(mid.iter().product());
    resize(mid, &mut inplane_out);
    let ivol = Vol::from_slice(&inplane_out, mid);
    if order_z == 0 {
        gather_axis(&ivol, a, &AxisPlan::nearest_indices(idims[a], odims[a]), dst);
    } else {
        threshold_axis(&ivol, a, &AxisPlan::new(idims[a], odims[a], order_z), dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    #[test]
    fn separate_axis_rules() {
        assert_eq!(separate_z_axis(&[5.0, 0.7, 0.7], &[1.5, 0.8, 0.8], None), Some(0));
        assert_eq!(separate_z_axis(&[1.0, 1.0, 1.0], &[1.3, 1.3, 1.3], None), None);
        // the new spacing decides when the current one is isotropic
        assert_eq!(separate_z_axis(&[1.0, 1.0, 1.0], &[1.0, 4.0, 1.0], None), Some(1));
        // tie for the largest spacing disables it
        assert_eq!(separate_z_axis(&[0.24, 1.25, 1.25], &[1.0, 1.0, 1.0], None), None);
        assert_eq!(separate_z_axis(&[1.0, 1.0, 2.0], &[1.0, 1.0, 1.0], Some(true)), Some(2));
        assert_eq!(separate_z_axis(&[1.0, 1.0, 1.0], &[1.0, 1.0, 1.0], Some(true)), None);
        assert_eq!(separate_z_axis(&[5.0, 0.7, 0.7], &[1.5, 0.8, 0.8], Some(false)), None);
        // exactly 3 is not above the threshold
        assert_eq!(separate_z_axis(&[3.0, 1.0, 1.0], &[1.0, 1.0, 1.0], None), None);
    }

    #[test]
    fn bad_arguments_name_the_argument() {
        let d = Array4::<f32>::zeros((1, 4, 4, 4));
        let v = d.view().into_dyn();
        let call = |ns: &[usize], cs: &[f64], order: usize, oz: usize| {
            resample_data(v.clone(), ns, cs, &[1.0, 1.0, 1.0], order, oz, None)
                .unwrap_err()
                .to_string()
        };
        assert!(call(&[2, 2], &[1.0; 3], 3, 0).starts_with("new_shape:"));
        assert!(call(&[2, 0, 2], &[1.0; 3], 3, 0).starts_with("new_shape:"));
        assert!(call(&[2, 2, 2], &[1.0, -1.0, 1.0], 3, 0).starts_with("current_spacing:"));
        assert!(call(&[2, 2, 2], &[1.0; 2], 3, 0).starts_with("current_spacing:"));
        assert!(call(&[2, 2, 2], &[1.0; 3], 2, 0).starts_with("order:"));
        assert!(call(&[2, 2, 2], &[1.0; 3], 3, 5).starts_with("order_z:"));
    }

    #[test]
    fn data_constant_and_range() {
        let d = Array4::<f32>::from_elem((2, 5, 6, 7), 1.5);
        let out = resample_data(d.view().into_dyn(), &[9, 4, 3], &[1.0; 3], &[1.0; 3], 3, 0, None).unwrap();
        assert_eq!(out.shape(), &[2, 9, 4, 3]);
        assert!(out.iter().all(|&v| v == 1.5));
        // a step edge: cubic overshoot is clipped to the input range
        let d = Array4::<f64>::from_shape_fn((1, 1, 1, 8), |(_, _, _, k)| if k < 4 { 0.0 } else { 1.0 });
        let out = resample_data(d.view().into_dyn(), &[1, 1, 21], &[1.0; 3], &[1.0; 3], 3, 0, None).unwrap();
        assert!(out.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(out.iter().any(|&v| v > 0.0 && v < 1.0));
    }

    #[test]
    fn seg_two_d_and_separate_path() {
        let s = Array4::<i8>::from_shape_fn((1, 3, 8, 8), |(_, z, y, x)| if x + y > 7 { z as i8 } else { -1 });
        // separate-z along axis 0 (5 vs 1 mm), upsampled in z with nearest
        let out = resample_seg(
            s.view().into_dyn(),
            &[7, 5, 5],
            &[5.0, 1.0, 1.0],
            &[2.0, 1.6, 1.6],
            1,
            0,
            None,
        )
        .unwrap();
        assert_eq!(out.shape(), &[1, 7, 5, 5]);
        for &v in out.iter() {
            assert!((-1..=2).contains(&v));
        }
        let s2 = s.index_axis(Axis(1), 0).to_owned();
        let out = resample_seg(s2.view().into_dyn(), &[5, 11], &[1.0, 1.0], &[1.6, 0.7], 1, 0, None).unwrap();
        assert_eq!(out.shape(), &[1, 5, 11]);
    }
}
