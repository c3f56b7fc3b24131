//! Cropping to the nonzero region, as nnU-Net's `crop_to_nonzero`.
//!
//! The nonzero mask (OR over channels of `data[c] != 0`) is read once, straight into runs
//! along the last axis; its bounding box comes from the runs. Hole filling (scipy's
//! `binary_fill_holes`, face connectivity) never changes that box: every background voxel
//! outside it reaches the array border through background. Inside the box, a background
//! voxel is outside the filled mask iff its face-connected background component touches the
//! box boundary, so the fill is a run-based labelling of the background of the box only.
//!
//! The work is split so that callers can allocate outputs between the steps:
//! [`plan_crop`] (mask, box, fill), then [`crop_data_into`] and [`crop_seg_into`] or
//! [`new_seg_into`].

use half::f16;
use ndarray::{ArrayD, ArrayView4, ArrayViewD, ArrayViewMut4, ArrayViewMutD, Axis, IxDyn};
use rayon::prelude::*;

use crate::components::runs::{
    copy_into, extract, label, pack_bytes, runs_from_words, Connectivity, Grid, MaskScratch, RowRuns, Run, RunTable,
    Rows,
};
use crate::components::{label_in_dtype, LabelValue};
use crate::{KernelError, KernelResult};

/// Float element types of image data; `is_nonzero` is `v != 0` (true for NaN, false for -0).
pub trait NonzeroValue: Copy + Send + Sync + 'static {
    fn is_nonzero(self) -> bool;
}

impl NonzeroValue for f32 {
    #[inline(always)]
    fn is_nonzero(self) -> bool {
        self.to_bits() & 0x7fff_ffff != 0
    }
}

impl NonzeroValue for f64 {
    #[inline(always)]
    fn is_nonzero(self) -> bool {
        self.to_bits() & 0x7fff_ffff_ffff_ffff != 0
    }
}

impl NonzeroValue for f16 {
    #[inline(always)]
    fn is_nonzero(self) -> bool {
        self.to_bits() & 0x7fff != 0
    }
}

/// What [`plan_crop`] found: the bounding box and, inside it, which background runs lie
/// outside the hole-filled nonzero mask.
pub struct CropPlan {
    spatial: Vec<usize>,
    bbox: Vec<[usize; 2]>,
    /// Box start on the internal `(x, y, z)` grid.
    g0: [usize; 3],
    /// Box size on the internal grid.
    bgrid: Grid,
    /// Background runs of the box, in box coordinates.
    bg: RunTable,
    /// Per background run: connected to the box boundary (outside the filled mask).
    outside: Vec<bool>,
}

impl CropPlan {
    /// Half-open `[start, end)` per spatial axis.
    pub fn bbox(&self) -> &[[usize; 2]] {
        &self.bbox
    }

    /// Spatial shape of the cropped arrays.
    pub fn cropped_shape(&self) -> Vec<usize> {
        self.bbox.iter().map(|b| b[1] - b[0]).collect()
    }

    /// Spatial shape of the input.
    pub fn input_shape(&self) -> &[usize] {
        &self.spatial
    }
}

fn check_channels_first(arg: &'static str, shape: &[usize]) -> KernelResult<()> {
    if shape.len() != 3 && shape.len() != 4 {
        return Err(KernelError::shape(
            arg,
            format!("expected 3 or 4 dimensions (c, x, y[, z]), got {} (shape {shape:?})", shape.len()),
        ));
    }
    if shape.contains(&0) {
        return Err(KernelError::shape(arg, format!("every axis must have at least one element, got shape {shape:?}")));
    }
    Ok(())
}

/// `(c, x, y, z)` as is; `(c, x, y)` as `(c, x, 1, y)`.
fn internal<'a, T>(v: ArrayViewD<'a, T>, arg: &'static str) -> KernelResult<ArrayView4<'a, T>> {
    let v = if v.ndim() == 3 { v.insert_axis(Axis(2)) } else { v };
    v.into_dimensionality().map_err(|e| KernelError::shape(arg, e.to_string()))
}

fn internal_mut<'a, T>(v: ArrayViewMutD<'a, T>, arg: &'static str) -> KernelResult<ArrayViewMut4<'a, T>> {
    let v = if v.ndim() == 3 { v.insert_axis(Axis(2)) } else { v };
    v.into_dimensionality().map_err(|e| KernelError::shape(arg, e.to_string()))
}

/// Rows of the nonzero mask: OR over channels of `v != 0`.
struct NonzeroRows<'a, F> {
    chans: Vec<Rows<'a, F>>,
}

impl<F: NonzeroValue> RowRuns for NonzeroRows<'_, F> {
    type Scratch = MaskScratch<F>;

    fn scratch(&self) -> MaskScratch<F> {
        MaskScratch::new(self.chans[0].shape()[2])
    }

    #[inline]
    fn push_runs(&self, x: usize, y: usize, sc: &mut MaskScratch<F>, out: &mut Vec<Run>) {
        let nz = self.chans[0].shape()[2];
        let first = self.chans[0].row(x, y, 0, nz, &mut sc.gather);
        for (b, &v) in sc.bytes.iter_mut().zip(first) {
            *b = v.is_nonzero() as u8;
        }
        for ch in &self.chans[1..] {
            let row = ch.row(x, y, 0, nz, &mut sc.gather);
            for (b, &v) in sc.bytes.iter_mut().zip(row) {
                *b |= v.is_nonzero() as u8;
            }
        }
        pack_bytes(&sc.bytes, &mut sc.words);
        runs_from_words(&sc.words, nz, out);
    }
}

/// Background runs of the box: the complement of the foreground runs, clipped and shifted.
struct ComplementRows<'t> {
    fg: &'t RunTable,
    g0: [usize; 3],
    z1: u32,
}

impl RowRuns for ComplementRows<'_> {
    type Scratch = ();

    fn scratch(&self) {}

    #[inline]
    fn push_runs(&self, x: usize, y: usize, _: &mut (), out: &mut Vec<Run>) {
        let (rs, _) = self.fg.row(self.g0[0] + x, self.g0[1] + y);
        let (z0, z1) = (self.g0[2] as u32, self.z1);
        let mut pos = z0;
        for r in rs {
            if r.e <= z0 {
                continue;
            }
            if r.s >= z1 {
                break;
            }
            if r.s > pos {
                out.push(Run { s: pos - z0, e: r.s - z0 });
            }
            pos = pos.max(r.e.min(z1));
        }
        if pos < z1 {
            out.push(Run { s: pos - z0, e: z1 - z0 });
        }
    }
}

/// Finds the nonzero mask of `data` (`(c, x, y, z)` or `(c, x, y)`), its bounding box, and the
/// background of the box that lies outside the hole-filled mask.
pub fn plan_crop<F: NonzeroValue>(data: ArrayViewD<'_, F>) -> KernelResult<CropPlan> {
    check_channels_first("data", data.shape())?;
    let spatial = data.shape()[1..].to_vec();
    let real_y = data.ndim() == 4;
    let d = internal(data, "data")?;
    let sh = d.shape();
    let grid = Grid { nx: sh[1], ny: sh[2], nz: sh[3] };
    if grid.nz >= u32::MAX as usize {
        return Err(KernelError::shape("data", "the last axis is too long (2^32 or more)"));
    }
    let chans: Vec<Rows<'_, F>> = d.outer_iter().map(Rows::new).collect();
    let fg = extract(grid, &NonzeroRows { chans })?;

    // Bounding box [x0, x1, y0, y1, z0, z1] of the foreground runs, slabs in parallel.
    let found = fg
        .slabs
        .par_iter()
        .map(|slab| {
            let mut b: Option<[usize; 6]> = None;
            for x in slab.p0..slab.p1 {
                for y in 0..grid.ny {
                    let (rs, _) = fg.row(x, y);
                    if let (Some(f), Some(l)) = (rs.first(), rs.last()) {
                        let (s, e) = (f.s as usize, l.e as usize);
                        b = Some(match b {
                            None => [x, x + 1, y, y + 1, s, e],
                            Some(o) => [o[0], x + 1, o[2].min(y), o[3].max(y + 1), o[4].min(s), o[5].max(e)],
                        });
                    }
                }
            }
            b
        })
        .reduce(
            || None,
            |a, b| match (a, b) {
                (None, v) | (v, None) => v,
                (Some(a), Some(b)) => Some([
                    a[0].min(b[0]),
                    a[1].max(b[1]),
                    a[2].min(b[2]),
                    a[3].max(b[3]),
                    a[4].min(b[4]),
                    a[5].max(b[5]),
                ]),
            },
        );
    // An empty mask keeps the whole image (and all of it is outside the mask).
    let b = found.unwrap_or([0, grid.nx, 0, grid.ny, 0, grid.nz]);
    let g0 = [b[0], b[2], b[4]];
    let bgrid = Grid { nx: b[1] - b[0], ny: b[3] - b[2], nz: b[5] - b[4] };
    let bbox = if real_y { vec![[b[0], b[1]], [b[2], b[3]], [b[4], b[5]]] } else { vec![[b[0], b[1]], [b[4], b[5]]] };

    // Background of the box, face-connected; components touching the box boundary are outside.
    let bg = extract(bgrid, &ComplementRows { fg: &fg, g0, z1: b[5] as u32 })?;
    drop(fg);
    let (labels, n) = label(&bg, Connectivity::Face);
    let mut touches = vec![false; n as usize + 1];
    let bnz = bgrid.nz as u32;
    for x in 0..bgrid.nx {
        let edge_x = x == 0 || x + 1 == bgrid.nx;
        for y in 0..bgrid.ny {
            let edge = edge_x || (real_y && (y == 0 || y + 1 == bgrid.ny));
            let (rs, base) = bg.row(x, y);
            for (k, r) in rs.iter().enumerate() {
                if edge || r.s == 0 || r.e == bnz {
                    touches[labels[base + k] as usize] = true;
                }
            }
        }
    }
    let outside: Vec<bool> = labels.iter().map(|&l| touches[l as usize]).collect();
    Ok(CropPlan { spatial, bbox, g0, bgrid, bg, outside })
}

fn check_out(out_shape: &[usize], channels: usize, plan: &CropPlan) -> KernelResult<()> {
    let mut want = vec![channels];
    want.extend(plan.cropped_shape());
    if out_shape != want.as_slice() {
        return Err(KernelError::shape("out", format!("expected shape {want:?}, got {out_shape:?}")));
    }
    Ok(())
}

/// Copies the box of `data` (the array given to [`plan_crop`]) into `out`.
pub fn crop_data_into<F: Copy + Send + Sync>(
    data: ArrayViewD<'_, F>,
    plan: &CropPlan,
    out: ArrayViewMutD<'_, F>,
) -> KernelResult<()> {
    if data.shape()[1..] != plan.spatial[..] {
        return Err(KernelError::shape("data", "shape differs from the one the crop was planned on"));
    }
    check_out(out.shape(), data.shape()[0], plan)?;
    let d = internal(data, "data")?;
    let mut o = internal_mut(out, "out")?;
    let [x0, y0, z0] = plan.g0;
    let z1 = z0 + plan.bgrid.nz;
    for (dc, mut oc) in d.outer_iter().zip(o.outer_iter_mut()) {
        let rows = Rows::new(dc);
        oc.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(x, mut plane)| {
            let mut buf = Vec::new();
            for (y, mut orow) in plane.outer_iter_mut().enumerate() {
                copy_into(&mut orow, rows.row(x0 + x, y0 + y, z0, z1, &mut buf));
            }
        });
    }
    Ok(())
}

/// Copies the box of `seg` (`(k, ...)`, same spatial shape as the data) into `out`, setting
/// its zeros outside the filled mask to `nonzero_label`.
pub fn crop_seg_into<S: LabelValue>(
    seg: ArrayViewD<'_, S>,
    plan: &CropPlan,
    nonzero_label: i64,
    out: ArrayViewMutD<'_, S>,
) -> KernelResult<()> {
    if seg.ndim() != plan.spatial.len() + 1 || seg.shape()[1..] != plan.spatial[..] || seg.shape()[0] == 0 {
        return Err(KernelError::shape(
            "seg",
            format!(
                "expected shape (k, {}) with k >= 1 to match data, got {:?}",
                plan.spatial.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "),
                seg.shape()
            ),
        ));
    }
    let nl: S = label_in_dtype("nonzero_label", nonzero_label)?;
    let zero = S::from_i64(0).expect("0 fits every label dtype");
    check_out(out.shape(), seg.shape()[0], plan)?;
    let s = internal(seg, "seg")?;
    let mut o = internal_mut(out, "out")?;
    let [x0, y0, z0] = plan.g0;
    let z1 = z0 + plan.bgrid.nz;
    for (sc, mut oc) in s.outer_iter().zip(o.outer_iter_mut()) {
        let rows = Rows::new(sc);
        oc.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(x, mut plane)| {
            let mut buf = Vec::new();
            for (y, mut orow) in plane.outer_iter_mut().enumerate() {
                copy_into(&mut orow, rows.row(x0 + x, y0 + y, z0, z1, &mut buf));
                let (rs, base) = plan.bg.row(x, y);
                for (k, r) in rs.iter().enumerate() {
                    if plan.outside[base + k] {
                        for v in orow.slice_mut(ndarray::s![r.s as usize..r.e as usize]) {
                            if *v == zero {
                                *v = nl;
                            }
                        }
                    }
                }
            }
        });
    }
    Ok(())
}

/// Writes the seg nnU-Net creates when there is none: int8, 0 inside the filled mask,
/// `nonzero_label` outside; `out` has shape `(1, ...cropped)`.
pub fn new_seg_into(plan: &CropPlan, nonzero_label: i64, out: ArrayViewMutD<'_, i8>) -> KernelResult<()> {
    let nl: i8 = label_in_dtype("nonzero_label", nonzero_label)?;
    check_out(out.shape(), 1, plan)?;
    let mut o = internal_mut(out, "out")?;
    let mut o0 = o.index_axis_mut(Axis(0), 0);
    o0.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(x, mut plane)| {
        for (y, mut orow) in plane.outer_iter_mut().enumerate() {
            orow.fill(0);
            let (rs, base) = plan.bg.row(x, y);
            for (k, r) in rs.iter().enumerate() {
                if plan.outside[base + k] {
                    orow.slice_mut(ndarray::s![r.s as usize..r.e as usize]).fill(nl);
                }
            }
        }
    });
    Ok(())
}

fn cropped_dims(channels: usize, plan: &CropPlan) -> IxDyn {
    let mut d = vec![channels];
    d.extend(plan.cropped_shape());
    IxDyn(&d)
}

/// nnU-Net's `crop_to_nonzero(data, seg, nonzero_label)` into new, contiguous arrays:
/// `(data cropped, seg cropped with zeros outside the mask set to nonzero_label, bbox)`.
/// The input seg is not modified.
#[allow(clippy::type_complexity)]
pub fn crop_to_nonzero<F: NonzeroValue, S: LabelValue>(
    data: ArrayViewD<'_, F>,
    seg: ArrayViewD<'_, S>,
    nonzero_label: i64,
) -> KernelResult<(ArrayD<F>, ArrayD<S>, Vec<[usize; 2]>)> {
    label_in_dtype::<S>("nonzero_label", nonzero_label)?;
    let plan = plan_crop(data.view())?;
    let zero = S::from_i64(0).expect("0 fits every label dtype");
    let mut s = ArrayD::from_elem(cropped_dims(seg.shape().first().copied().unwrap_or(1), &plan), zero);
    crop_seg_into(seg, &plan, nonzero_label, s.view_mut())?;
    let mut d = ArrayD::from_elem(cropped_dims(data.shape()[0], &plan), data.first().copied().unwrap());
    crop_data_into(data, &plan, d.view_mut())?;
    Ok((d, s, plan.bbox))
}

/// [`crop_to_nonzero`] without a seg: the seg returned is the int8 one nnU-Net creates.
#[allow(clippy::type_complexity)]
pub fn crop_to_nonzero_without_seg<F: NonzeroValue>(
    data: ArrayViewD<'_, F>,
    nonzero_label: i64,
) -> KernelResult<(ArrayD<F>, ArrayD<i8>, Vec<[usize; 2]>)> {
    label_in_dtype::<i8>("nonzero_label", nonzero_label)?;
    let plan = plan_crop(data.view())?;
    let mut s = ArrayD::zeros(cropped_dims(1, &plan));
    new_seg_into(&plan, nonzero_label, s.view_mut())?;
    let mut d = ArrayD::from_elem(cropped_dims(data.shape()[0], &plan), data.first().copied().unwrap());
    crop_data_into(data, &plan, d.view_mut())?;
    Ok((d, s, plan.bbox))
}

#[cfg(test)]
mod tests;
