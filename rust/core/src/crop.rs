//! Cropping to the nonzero region, as nnU-Net's `crop_to_nonzero`.
//!
//! Hole filling (scipy's `binary_fill_holes`, face connectivity) never changes the bounding
//! box of the nonzero mask: every background voxel outside the box reaches the array border
//! through background. So the box is found first, on the raw mask (OR over channels of
//! `data[c] != 0`), by scanning inwards from the array's faces and stopping at the first
//! nonzero voxel, which reads little more than the empty margin. Then one pass over the box
//! copies the data out and extracts the mask's runs along the last axis. Inside the box, a
//! background voxel is outside the filled mask iff its face-connected background component
//! touches the box boundary, so the fill is a run-based labelling of the box's background.
//!
//! The steps are split so that callers can allocate the outputs in between: [`crop_box`],
//! then [`crop_data_into`] (copy + fill), then [`crop_seg_into`] or [`new_seg_into`].

use std::sync::atomic::{AtomicUsize, Ordering};

use half::f16;
use ndarray::{ArrayD, ArrayView4, ArrayViewD, ArrayViewMut4, ArrayViewMutD, Axis, IxDyn};
use rayon::prelude::*;

use crate::components::runs::{
    copy_into, extract, label, pack_bytes, runs_from_words, Connectivity, Grid, MaskScratch, RowRuns, Rows, RowsMut,
    Run, RunTable,
};
use crate::components::{label_in_dtype, LabelValue};
use crate::{KernelError, KernelResult};

/// Float element types of image data; `is_nonzero` is `v != 0` (true for NaN, false for -0).
pub trait NonzeroValue: Copy + Send + Sync + 'static {
    /// The bits of the value without its sign: zero exactly when the value is ±0.
    fn magnitude_bits(self) -> u64;
    #[inline(always)]
    fn is_nonzero(self) -> bool {
        self.magnitude_bits() != 0
    }
}

impl NonzeroValue for f32 {
    #[inline(always)]
    fn magnitude_bits(self) -> u64 {
        (self.to_bits() & 0x7fff_ffff) as u64
    }
}

impl NonzeroValue for f64 {
    #[inline(always)]
    fn magnitude_bits(self) -> u64 {
        self.to_bits() & 0x7fff_ffff_ffff_ffff
    }
}

impl NonzeroValue for f16 {
    #[inline(always)]
    fn magnitude_bits(self) -> u64 {
        (self.to_bits() & 0x7fff) as u64
    }
}

/// The bounding box of the nonzero mask, from [`crop_box`].
#[derive(Clone, Debug)]
pub struct CropBox {
    spatial: Vec<usize>,
    /// Whether the internal `y` axis is a real one (3D data) or inserted (2D data).
    real_y: bool,
    bbox: Vec<[usize; 2]>,
    /// Box start on the internal `(x, y, z)` grid.
    g0: [usize; 3],
    /// Box size on the internal grid.
    bgrid: Grid,
}

impl CropBox {
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

/// The box and, inside it, which background runs lie outside the hole-filled mask; from
/// [`crop_data_into`].
pub struct CropPlan {
    pub crop: CropBox,
    /// Background runs of the box, in box coordinates.
    bg: RunTable,
    /// Per background run: connected to the box boundary (outside the filled mask).
    outside: Vec<bool>,
}

fn check_channels_first(arg: &'static str, shape: &[usize]) -> KernelResult<()> {
    if shape.len() != 3 && shape.len() != 4 {
        return Err(KernelError::shape(
            arg,
            format!(
                "expected 3 or 4 dimensions (c, x, y[, z]), got {} (shape {shape:?})",
                shape.len()
            ),
        ));
    }
    if shape.contains(&0) {
        return Err(KernelError::shape(
            arg,
            format!("every axis must have at least one element, got shape {shape:?}"),
        ));
    }
    Ok(())
}

/// `(c, x, y, z)` as is; `(c, x, y)` as `(c, x, 1, y)`.
fn internal<'a, T>(v: ArrayViewD<'a, T>, arg: &'static str) -> KernelResult<ArrayView4<'a, T>> {
    let v = if v.ndim() == 3 { v.insert_axis(Axis(2)) } else { v };
    v.into_dimensionality()
        .map_err(|e| KernelError::shape(arg, e.to_string()))
}

fn internal_mut<'a, T>(v: ArrayViewMutD<'a, T>, arg: &'static str) -> KernelResult<ArrayViewMut4<'a, T>> {
    let v = if v.ndim() == 3 { v.insert_axis(Axis(2)) } else { v };
    v.into_dimensionality()
        .map_err(|e| KernelError::shape(arg, e.to_string()))
}

/// Index of the first nonzero value of `row`.
#[inline]
fn first_nonzero<F: NonzeroValue>(row: &[F]) -> Option<usize> {
    let mut chunks = row.chunks_exact(64);
    let mut base = 0;
    for c in chunks.by_ref() {
        if c.iter().fold(0u64, |a, v| a | v.magnitude_bits()) != 0 {
            return c.iter().position(|v| v.is_nonzero()).map(|k| base + k);
        }
        base += 64;
    }
    let rest = chunks.remainder();
    if rest.iter().fold(0u64, |a, v| a | v.magnitude_bits()) == 0 {
        return None;
    }
    rest.iter().position(|v| v.is_nonzero()).map(|k| base + k)
}

/// Index of the last nonzero value of `row`.
#[inline]
fn last_nonzero<F: NonzeroValue>(row: &[F]) -> Option<usize> {
    let mut chunks = row.rchunks_exact(64);
    let mut end = row.len();
    for c in chunks.by_ref() {
        if c.iter().fold(0u64, |a, v| a | v.magnitude_bits()) != 0 {
            return c.iter().rposition(|v| v.is_nonzero()).map(|k| end - 64 + k);
        }
        end -= 64;
    }
    let rest = chunks.remainder();
    if rest.iter().fold(0u64, |a, v| a | v.magnitude_bits()) == 0 {
        return None;
    }
    rest.iter().rposition(|v| v.is_nonzero())
}

/// The channels of the data, row by row.
struct Channels<'a, F> {
    chans: Vec<Rows<'a, F>>,
}

impl<F: NonzeroValue> Channels<'_, F> {
    /// First `z` in `[lo, hi)` where any channel of row `(x, y)` is nonzero.
    fn first(&self, x: usize, y: usize, lo: usize, hi: usize, buf: &mut Vec<F>) -> Option<usize> {
        let mut best = hi;
        for ch in &self.chans {
            if best <= lo {
                break;
            }
            if let Some(k) = first_nonzero(ch.row(x, y, lo, best, buf)) {
                best = lo + k;
            }
        }
        (best < hi).then_some(best)
    }

    /// Last `z` in `[lo, hi)` where any channel of row `(x, y)` is nonzero.
    fn last(&self, x: usize, y: usize, lo: usize, hi: usize, buf: &mut Vec<F>) -> Option<usize> {
        let mut found = None;
        let mut from = lo;
        for ch in &self.chans {
            if from >= hi {
                break;
            }
            if let Some(k) = last_nonzero(ch.row(x, y, from, hi, buf)) {
                found = Some(from + k);
                from += k + 1;
            }
        }
        found
    }

    fn row_any(&self, x: usize, y: usize, nz: usize) -> bool {
        self.first(x, y, 0, nz, &mut Vec::new()).is_some()
    }
}

/// Finds the bounding box of the nonzero mask of `data` (`(c, x, y, z)` or `(c, x, y)`),
/// reading inwards from the faces of the array only as far as the first nonzero voxel.
pub fn crop_box<F: NonzeroValue>(data: ArrayViewD<'_, F>) -> KernelResult<CropBox> {
    check_channels_first("data", data.shape())?;
    let spatial = data.shape()[1..].to_vec();
    let real_y = data.ndim() == 4;
    let d = internal(data, "data")?;
    let (nx, ny, nz) = (d.shape()[1], d.shape()[2], d.shape()[3]);
    if nz >= u32::MAX as usize {
        return Err(KernelError::shape("data", "the last axis is too long (2^32 or more)"));
    }
    let ch = Channels {
        chans: d.outer_iter().map(Rows::new).collect(),
    };
    let plane_any = |x: usize| (0..ny).into_par_iter().any(|y| ch.row_any(x, y, nz));
    let b = match (0..nx).find(|&x| plane_any(x)) {
        // An empty mask keeps the whole image.
        None => [0, nx, 0, ny, 0, nz],
        Some(x0) => {
            let x1 = (x0..nx).rev().find(|&x| plane_any(x)).map_or(nx, |x| x + 1);
            let y_any = |y: usize| (x0..x1).into_par_iter().any(|x| ch.row_any(x, y, nz));
            let y0 = (0..ny).find(|&y| y_any(y)).unwrap_or(0);
            let y1 = (y0..ny).rev().find(|&y| y_any(y)).map_or(ny, |y| y + 1);
            // Along z, every row of the box only needs reading up to the best bounds so far.
            let (zlo, zhi) = (AtomicUsize::new(nz), AtomicUsize::new(0));
            let line = 64 / std::mem::size_of::<F>();
            (x0..x1).into_par_iter().for_each(|x| {
                let mut buf = Vec::new();
                for y in y0..y1 {
                    // Only the two ends of each row are read: fetch their first two cache
                    // lines a few rows ahead (a strided pattern the hardware misses).
                    for c in &ch.chans {
                        c.prefetch(x, y + 16, 0);
                        c.prefetch(x, y + 16, line);
                        c.prefetch(x, y + 16, nz - 1);
                        c.prefetch(x, y + 16, nz.saturating_sub(line + 1));
                    }
                    let lo = zlo.load(Ordering::Relaxed);
                    if let Some(z) = ch.first(x, y, 0, lo, &mut buf) {
                        zlo.fetch_min(z, Ordering::Relaxed);
                    }
                    let hi = zhi.load(Ordering::Relaxed);
                    if let Some(z) = ch.last(x, y, hi, nz, &mut buf) {
                        zhi.fetch_max(z + 1, Ordering::Relaxed);
                    }
                }
            });
            [x0, x1, y0, y1, zlo.into_inner(), zhi.into_inner()]
        }
    };
    let bbox = if real_y {
        vec![[b[0], b[1]], [b[2], b[3]], [b[4], b[5]]]
    } else {
        vec![[b[0], b[1]], [b[4], b[5]]]
    };
    Ok(CropBox {
        spatial,
        real_y,
        bbox,
        g0: [b[0], b[2], b[4]],
        bgrid: Grid {
            nx: b[1] - b[0],
            ny: b[3] - b[2],
            nz: b[5] - b[4],
        },
    })
}

/// Copies the box rows of every channel into the output and yields the runs of the mask
/// (OR over channels of `v != 0`) in box coordinates.
struct CopyRows<'a, 'o, F> {
    src: Channels<'a, F>,
    dst: Vec<RowsMut<'o, F>>,
    g0: [usize; 3],
    nz: usize,
}

impl<F: NonzeroValue> RowRuns for CopyRows<'_, '_, F> {
    type Scratch = MaskScratch<F>;

    fn scratch(&self) -> MaskScratch<F> {
        MaskScratch::new(self.nz)
    }

    #[inline]
    fn push_runs(&self, x: usize, y: usize, sc: &mut MaskScratch<F>, out: &mut Vec<Run>) {
        let [x0, y0, z0] = self.g0;
        for (c, (src, dst)) in self.src.chans.iter().zip(&self.dst).enumerate() {
            let row = src.row(x0 + x, y0 + y, z0, z0 + self.nz, &mut sc.gather);
            // SAFETY: `extract` visits every row exactly once, on one thread.
            unsafe { dst.write_row(x, y, row) };
            if c == 0 {
                for (b, &v) in sc.bytes.iter_mut().zip(row) {
                    *b = v.is_nonzero() as u8;
                }
            } else {
                for (b, &v) in sc.bytes.iter_mut().zip(row) {
                    *b |= v.is_nonzero() as u8;
                }
            }
        }
        pack_bytes(&sc.bytes, &mut sc.words);
        runs_from_words(&sc.words, self.nz, out);
    }
}

/// Background runs of the box: the complement of its foreground runs.
struct ComplementRows<'t> {
    fg: &'t RunTable,
}

impl RowRuns for ComplementRows<'_> {
    type Scratch = ();

    fn scratch(&self) {}

    #[inline]
    fn push_runs(&self, x: usize, y: usize, _: &mut (), out: &mut Vec<Run>) {
        let (rs, _) = self.fg.row(x, y);
        let nz = self.fg.grid.nz as u32;
        let mut pos = 0;
        for r in rs {
            if r.s > pos {
                out.push(Run { s: pos, e: r.s });
            }
            pos = r.e;
        }
        if pos < nz {
            out.push(Run { s: pos, e: nz });
        }
    }
}

/// Copies the box of `data` (the array given to [`crop_box`]) into `out` (`(c, ...cropped)`)
/// and fills the holes of the mask inside the box.
pub fn crop_data_into<F: NonzeroValue>(
    data: ArrayViewD<'_, F>,
    crop: &CropBox,
    out: ArrayViewMutD<'_, F>,
) -> KernelResult<CropPlan> {
    if data.shape()[1..] != crop.spatial[..] {
        return Err(KernelError::shape(
            "data",
            "shape differs from the one the crop box was found on",
        ));
    }
    check_out(out.shape(), data.shape()[0], crop)?;
    let d = internal(data, "data")?;
    let mut o = internal_mut(out, "out")?;
    let src = Channels {
        chans: d.outer_iter().map(Rows::new).collect(),
    };
    let dst: Vec<RowsMut<'_, F>> = o.outer_iter_mut().map(RowsMut::new).collect();
    let bgrid = crop.bgrid;
    let fg = extract(
        bgrid,
        &CopyRows {
            src,
            dst,
            g0: crop.g0,
            nz: bgrid.nz,
        },
    )?;

    // Background of the box, face-connected; components touching the box boundary are outside.
    let bg = extract(bgrid, &ComplementRows { fg: &fg })?;
    drop(fg);
    let (labels, n) = label(&bg, Connectivity::Face);
    let mut touches = vec![false; n as usize + 1];
    let bnz = bgrid.nz as u32;
    for x in 0..bgrid.nx {
        let edge_x = x == 0 || x + 1 == bgrid.nx;
        for y in 0..bgrid.ny {
            let edge = edge_x || (crop.real_y && (y == 0 || y + 1 == bgrid.ny));
            let (rs, base) = bg.row(x, y);
            for (k, r) in rs.iter().enumerate() {
                if edge || r.s == 0 || r.e == bnz {
                    touches[labels[base + k] as usize] = true;
                }
            }
        }
    }
    let outside: Vec<bool> = labels.iter().map(|&l| touches[l as usize]).collect();
    Ok(CropPlan {
        crop: crop.clone(),
        bg,
        outside,
    })
}

fn check_out(out_shape: &[usize], channels: usize, crop: &CropBox) -> KernelResult<()> {
    let mut want = vec![channels];
    want.extend(crop.cropped_shape());
    if out_shape != want.as_slice() {
        return Err(KernelError::shape(
            "out",
            format!("expected shape {want:?}, got {out_shape:?}"),
        ));
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
    if seg.ndim() != plan.crop.spatial.len() + 1 || seg.shape()[1..] != plan.crop.spatial[..] || seg.shape()[0] == 0 {
        return Err(KernelError::shape(
            "seg",
            format!(
                "expected shape (k, {}) with k >= 1 to match data, got {:?}",
                plan.crop
                    .spatial
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                seg.shape()
            ),
        ));
    }
    let nl: S = label_in_dtype("nonzero_label", nonzero_label)?;
    let zero = S::from_i64(0).expect("0 fits every label dtype");
    check_out(out.shape(), seg.shape()[0], &plan.crop)?;
    let s = internal(seg, "seg")?;
    let mut o = internal_mut(out, "out")?;
    let [x0, y0, z0] = plan.crop.g0;
    let z1 = z0 + plan.crop.bgrid.nz;
    for (sc, mut oc) in s.outer_iter().zip(o.outer_iter_mut()) {
        let rows = Rows::new(sc);
        oc.axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(x, mut plane)| {
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
    check_out(out.shape(), 1, &plan.crop)?;
    let mut o = internal_mut(out, "out")?;
    let mut o0 = o.index_axis_mut(Axis(0), 0);
    o0.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(x, mut plane)| {
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

fn cropped_dims(channels: usize, crop: &CropBox) -> IxDyn {
    let mut d = vec![channels];
    d.extend(crop.cropped_shape());
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
    let crop = crop_box(data.view())?;
    let mut d = ArrayD::from_elem(cropped_dims(data.shape()[0], &crop), data.first().copied().unwrap());
    let plan = crop_data_into(data, &crop, d.view_mut())?;
    let zero = S::from_i64(0).expect("0 fits every label dtype");
    let mut s = ArrayD::from_elem(cropped_dims(seg.shape().first().copied().unwrap_or(1), &crop), zero);
    crop_seg_into(seg, &plan, nonzero_label, s.view_mut())?;
    Ok((d, s, crop.bbox))
}

/// [`crop_to_nonzero`] without a seg: the seg returned is the int8 one nnU-Net creates.
#[allow(clippy::type_complexity)]
pub fn crop_to_nonzero_without_seg<F: NonzeroValue>(
    data: ArrayViewD<'_, F>,
    nonzero_label: i64,
) -> KernelResult<(ArrayD<F>, ArrayD<i8>, Vec<[usize; 2]>)> {
    label_in_dtype::<i8>("nonzero_label", nonzero_label)?;
    let crop = crop_box(data.view())?;
    let mut d = ArrayD::from_elem(cropped_dims(data.shape()[0], &crop), data.first().copied().unwrap());
    let plan = crop_data_into(data, &crop, d.view_mut())?;
    let mut s = ArrayD::zeros(cropped_dims(1, &crop));
    new_seg_into(&plan, nonzero_label, s.view_mut())?;
    Ok((d, s, crop.bbox))
}

#[cfg(test)]
mod tests;
