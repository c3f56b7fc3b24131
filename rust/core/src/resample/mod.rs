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
use pass::{axis_pass, chain_sized, gather_axis, min_max, uninit_vec, Clip, Vol};
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
            let win = Window::whole(ch.shape()[0], lay.odims[0]);
            data_channel_lanes(ch, win, lay.odims, lay.sep, order, order_z, dst);
        },
    )
}

/// Per output plane along axis 0 of [`resample_data`] on 3-d data of spatial shape `in_shape`,
/// the first and last input plane it reads, when bands of planes resample on their own
/// exactly as the whole volume does ([`resample_data_band`]); otherwise `Err(why not)`.
///
/// Bands are exact where every pass that crosses axis 0 is local (order 0 or 1; order 3's
/// B-spline prefilter spans the whole line) and every clip is either per slice along axis 0 or
/// a no-op (orders 0 and 1 never leave the range of their taps, see `AxisPlan::bounded`; order
/// 3 is clipped to a range over the whole volume).
#[allow(clippy::too_many_arguments)]
pub fn band_dependencies(
    in_shape: &[usize],
    new_shape: &[usize],
    current_spacing: &[f64],
    new_spacing: &[f64],
    order: usize,
    order_z: usize,
    force_separate_z: Option<bool>,
) -> KernelResult<Result<Vec<(usize, usize)>, String>> {
    if in_shape.len() != 3 {
        return Err(KernelError::shape(
            "in_shape",
            format!("bands need 3 spatial axes, got {in_shape:?}"),
        ));
    }
    let mut full = vec![1];
    full.extend_from_slice(in_shape);
    check_args(
        "in_shape",
        &full,
        new_shape,
        current_spacing,
        new_spacing,
        order,
        order_z,
    )?;
    let sep = separate_z_axis(current_spacing, new_spacing, force_separate_z);
    let (n0, m0) = (in_shape[0], new_shape[0]);
    let changes = |a: usize| in_shape[a] != new_shape[a];
    let why = match sep {
        None if order == 3 && (0..3).any(changes) => Some(
            "order 3 is clipped to each channel's range over the whole volume (and its B-spline prefilter \
             spans every plane along axis 0)"
                .to_string(),
        ),
        Some(0) if order_z == 3 && changes(0) => {
            Some("order_z 3 along axis 0: its B-spline prefilter spans every plane".to_string())
        }
        Some(a) if a != 0 && order == 3 && (0..3).any(|b| b != a && changes(b)) => Some(format!(
            "order 3 in plane is clipped per slice along axis {a}, and those slices span every plane of axis 0"
        )),
        _ => None,
    };
    if let Some(why) = why {
        return Ok(Err(why));
    }
    if n0 == m0 {
        return Ok(Ok((0..m0).map(|o| (o, o)).collect()));
    }
    let along0 = if sep == Some(0) { order_z } else { order };
    Ok(Ok(AxisPlan::new(n0, m0, along0).span()))
}

/// Output planes `planes = (o0, o1)` along axis 0 of `resample_data(full, new_shape, ...)`,
/// computed from `band`, the planes `[first_plane, first_plane + band.shape[1])` of a 4-d
/// `full` with `depth` planes; bit for bit the whole-volume result's planes. The band must
/// hold every input plane those outputs read ([`band_dependencies`]), and the geometry must
/// allow bands at all (else an `order` error saying why).
#[allow(clippy::too_many_arguments)]
pub fn resample_data_band<T: Sample>(
    band: ArrayViewD<'_, T>,
    first_plane: usize,
    depth: usize,
    planes: (usize, usize),
    new_shape: &[usize],
    current_spacing: &[f64],
    new_spacing: &[f64],
    order: usize,
    order_z: usize,
    force_separate_z: Option<bool>,
) -> KernelResult<ArrayD<T>> {
    if band.ndim() != 4 {
        return Err(KernelError::shape(
            "band",
            format!("expected 4 dimensions (c, planes, y, z), got shape {:?}", band.shape()),
        ));
    }
    let sh = band.shape().to_vec();
    if sh[1] == 0 || first_plane + sh[1] > depth {
        return Err(KernelError::invalid(
            "first_plane",
            format!(
                "a band of {} planes from plane {first_plane} does not fit a depth of {depth}",
                sh[1]
            ),
        ));
    }
    let deps = match band_dependencies(
        &[depth, sh[2], sh[3]],
        new_shape,
        current_spacing,
        new_spacing,
        order,
        order_z,
        force_separate_z,
    )? {
        Ok(d) => d,
        Err(why) => {
            return Err(KernelError::invalid(
                "order",
                format!("no exact band resampling: {why}"),
            ))
        }
    };
    let (o0, o1) = planes;
    if !(o0 < o1 && o1 <= new_shape[0]) {
        return Err(KernelError::invalid(
            "planes",
            format!("expected 0 <= o0 < o1 <= {}, got {planes:?}", new_shape[0]),
        ));
    }
    let lo = deps[o0..o1].iter().map(|d| d.0).min().unwrap_or(0);
    let hi = deps[o0..o1].iter().map(|d| d.1).max().unwrap_or(0);
    if lo < first_plane || hi >= first_plane + sh[1] {
        return Err(KernelError::invalid(
            "band",
            format!(
                "output planes {o0}..{o1} read input planes {lo}..={hi}, the band holds {first_plane}..{}",
                first_plane + sh[1]
            ),
        ));
    }
    let win = Window {
        n0: depth,
        m0: new_shape[0],
        i0: first_plane,
        o0,
        o1,
    };
    let odims = [new_shape[0], new_shape[1], new_shape[2]];
    let sep = separate_z_axis(current_spacing, new_spacing, force_separate_z);
    let nc = sh[0];
    let per = (o1 - o0) * odims[1] * odims[2];
    let mut out: Vec<T> = crate::mem::try_zeroed("resampled band", nc * per)?;
    let v4: ArrayView4<'_, T> = band.into_dimensionality().expect("4 dimensions checked");
    for (c, dst) in out.chunks_mut(per.max(1)).enumerate().take(nc) {
        data_channel_lanes(v4.index_axis(Axis(0), c), win, odims, sep, order, order_z, dst);
    }
    Ok(ArrayD::from_shape_vec(IxDyn(&[nc, o1 - o0, odims[1], odims[2]]), out).expect("output length"))
}

/// The part of axis 0 one call resamples: output planes `[o0, o1)` of a resize from `n0` to
/// `m0` planes, read from the source's planes, which are input planes `[i0, i0 + len)`.
#[derive(Clone, Copy, Debug)]
struct Window {
    n0: usize,
    m0: usize,
    i0: usize,
    o0: usize,
    o1: usize,
}

impl Window {
    fn whole(n0: usize, m0: usize) -> Window {
        Window {
            n0,
            m0,
            i0: 0,
            o0: 0,
            o1: m0,
        }
    }

    fn is_whole(&self, len: usize) -> bool {
        self.i0 == 0 && len == self.n0 && self.o0 == 0 && self.o1 == self.m0
    }

    /// `plan`, an axis-0 plan over the full axis, restricted to the window.
    fn plan(&self, plan: AxisPlan, len: usize) -> AxisPlan {
        if self.is_whole(len) {
            plan
        } else {
            plan.window(self.i0, len, self.o0, self.o1)
        }
    }

    /// Nearest input plane (as an index into the source) of each output plane of the window.
    fn nearest(&self) -> Vec<usize> {
        let all = AxisPlan::nearest_indices(self.n0, self.m0);
        all[self.o0..self.o1].iter().map(|&j| j - self.i0).collect()
    }
}

/// [`data_channel`] with f32 scratch lines where they are exact enough.
fn data_channel_lanes<T: Sample>(
    src: ArrayView3<'_, T>,
    win: Window,
    odims: [usize; 3],
    sep: Option<usize>,
    order: usize,
    order_z: usize,
    dst: &mut [T],
) {
    if T::F32_LINES_UP_TO_ORDER_1 && order <= 1 && order_z <= 1 {
        data_channel::<T, f32>(src, win, odims, sep, order, order_z, dst);
    } else {
        data_channel::<T, T::Scratch>(src, win, odims, sep, order, order_z, dst);
    }
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

/// One channel: the planes `win` names of the resize of a `(n0, y, z)` volume to `odims`
/// (the whole volume's target), from `src`, the window's input planes. Every decision (which
/// axes, in which order, fused or not) is made from the whole volume's shapes, so a band gets
/// the whole volume's arithmetic; a band's clips are those that are exact for it (per slice
/// along axis 0, or none where the whole volume's clip is a no-op, see `band_dependencies`).
fn data_channel<T: Sample, F: Lane>(
    src: ArrayView3<'_, T>,
    win: Window,
    odims: [usize; 3],
    sep: Option<usize>,
    order: usize,
    order_z: usize,
    dst: &mut [T],
) {
    let band = !win.is_whole(src.shape()[0]);
    // an axis 0 that keeps its size is the identity: a band keeps only the planes asked for
    let (src, win) = if band && win.n0 == win.m0 {
        let planes = src.slice_axis_move(Axis(0), ndarray::Slice::from(win.o0 - win.i0..win.o1 - win.i0));
        (planes, Window { i0: win.o0, ..win })
    } else {
        (src, win)
    };
    let vol = Vol::from_view(&src);
    let len = vol.dims[0];
    let idims = [win.n0, vol.dims[1], vol.dims[2]];
    let mut bdims = odims; // what this call writes
    bdims[0] = win.o1 - win.o0;
    if idims == odims {
        // nothing changes (only a band gets here): a copy of its planes
        gather_axis(&vol, 0, &(0..len).collect::<Vec<_>>(), dst);
        return;
    }
    let plans: Vec<AxisPlan> = (0..3)
        .map(|a| {
            let p = AxisPlan::new(idims[a], odims[a], order).bounded();
            // (on the separate-z path along axis 0 this plan is never used: order_z decides)
            if a == 0 && band && sep != Some(0) && order <= 1 && idims[0] != odims[0] {
                win.plan(p, len)
            } else {
                p
            }
        })
        .collect();
    let steps_for = |axes: &[usize]| -> Vec<(usize, &AxisPlan)> { axes.iter().map(|&a| (a, &plans[a])).collect() };
    let depth0 = Some((win.n0, win.m0));
    let Some(a) = sep else {
        let steps = steps_for(&changed_axes(idims, odims, None));
        // a band leaves out the clip, a no-op for the orders bands allow
        let clip = if band {
            Clip::None
        } else {
            let (lo, hi) = min_max(&vol, None)[0];
            Clip::All(lo, hi)
        };
        chain_sized::<_, T::Work, T, F>(&vol, &steps, dst, &clip, depth0);
        return;
    };
    let zplan = || {
        let p = AxisPlan::new(idims[a], odims[a], order_z).bounded();
        if a == 0 {
            win.plan(p, len)
        } else {
            p
        }
    };
    let nearest = || {
        if a == 0 {
            win.nearest()
        } else {
            AxisPlan::nearest_indices(idims[a], odims[a])
        }
    };
    let inplane = changed_axes(idims, odims, Some(a));
    let steps = steps_for(&inplane);
    let z_changes = idims[a] != odims[a];
    if inplane.is_empty() {
        // only the separate axis changes: the in-plane "resize" is a copy, nothing is clipped
        if order_z == 0 {
            gather_axis(&vol, a, &nearest(), dst);
        } else {
            axis_pass::<F, _, _>(&vol, a, &zplan(), dst, &Clip::None);
        }
        return;
    }
    // every slice along `a` is clipped to its own range; along axis 0 a band's slices are the
    // volume's, along another axis they span every plane and (orders 0/1) the clip is a no-op
    let bounds = if band && a != 0 {
        None
    } else {
        Some(min_max(&vol, Some(a)))
    };
    let clip_of = |b: Option<Vec<(f64, f64)>>| match b {
        Some(bounds) => Clip::AlongAxis { axis: a, bounds },
        None => Clip::None,
    };
    if !z_changes {
        chain_sized::<_, T::Work, T, F>(&vol, &steps, dst, &clip_of(bounds), depth0);
        return;
    }
    let mut mid = bdims;
    mid[a] = vol.dims[a];
    if order_z == 0 {
        let nn = nearest();
        if odims[a] < idims[a] {
            // fewer slices out than in: pick them first, resize only those
            let mut sdims = vol.dims;
            sdims[a] = nn.len();
            let mut picked: Vec<T> = uninit_vec(sdims.iter().product());
            gather_axis(&vol, a, &nn, &mut picked);
            let bounds = bounds.map(|b| nn.iter().map(|&j| b[j]).collect());
            let pvol = Vol::from_slice(&picked, sdims);
            chain_sized::<_, T::Work, T, F>(&pvol, &steps, dst, &clip_of(bounds), depth0);
        } else {
            let mut inplane_out: Vec<T> = uninit_vec(mid.iter().product());
            chain_sized::<_, T::Work, T, F>(&vol, &steps, &mut inplane_out, &clip_of(bounds), depth0);
            gather_axis(&Vol::from_slice(&inplane_out, mid), a, &nn, dst);
        }
    } else {
        let mut inplane_out: Vec<T::Work> = uninit_vec(mid.iter().product());
        chain_sized::<_, T::Work, T::Work, F>(&vol, &steps, &mut inplane_out, &clip_of(bounds), depth0);
        axis_pass::<F, _, _>(&Vol::from_slice(&inplane_out, mid), a, &zplan(), dst, &Clip::None);
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
    fn bands_equal_the_whole_volume() {
        let d = Array4::<f32>::from_shape_fn((2, 9, 7, 6), |(c, z, y, x)| {
            ((c * 31 + z * 7 + y * 3 + x) % 11) as f32 * 0.37 - 1.1
        });
        let ns = [15, 11, 5];
        for (cs, order, order_z) in [
            ([1.0, 1.0, 1.0], 1, 0),
            ([4.0, 1.0, 1.0], 3, 1),
            ([4.0, 1.0, 1.0], 1, 0),
        ] {
            let whole = resample_data(d.view().into_dyn(), &ns, &cs, &[1.0; 3], order, order_z, None).unwrap();
            let deps = band_dependencies(&[9, 7, 6], &ns, &cs, &[1.0; 3], order, order_z, None)
                .unwrap()
                .unwrap();
            for o0 in 0..ns[0] {
                let o1 = (o0 + 3).min(ns[0]);
                let lo = deps[o0..o1].iter().map(|d| d.0).min().unwrap();
                let hi = deps[o0..o1].iter().map(|d| d.1).max().unwrap() + 1;
                let band = d.slice(ndarray::s![.., lo..hi, .., ..]);
                let got = resample_data_band(
                    band.into_dyn(),
                    lo,
                    9,
                    (o0, o1),
                    &ns,
                    &cs,
                    &[1.0; 3],
                    order,
                    order_z,
                    None,
                )
                .unwrap();
                assert_eq!(
                    got,
                    whole.slice(ndarray::s![.., o0..o1, .., ..]).into_dyn(),
                    "{cs:?} {order} {o0}"
                );
            }
        }
        // order 3 across axis 0: no bands, and the band entry point says why
        assert!(band_dependencies(&[9, 7, 6], &ns, &[1.0; 3], &[1.0; 3], 3, 0, None)
            .unwrap()
            .is_err());
        let err = resample_data_band(d.view().into_dyn(), 0, 9, (0, 1), &ns, &[1.0; 3], &[1.0; 3], 3, 0, None);
        assert!(err
            .unwrap_err()
            .to_string()
            .starts_with("order: no exact band resampling"));
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
