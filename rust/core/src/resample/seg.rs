//! Label maps: argmax of interpolated label indicators (batchgenerators 0.25.5
//! `resize_segmentation`), in one pass over the output for orders 0 and 1.
//!
//! At order 1 the indicator score of label `c` at an output voxel is the sum, over the 2^d
//! neighbouring input voxels labelled `c`, of the products of the per-axis linear weights.
//! The products and sums are formed in exactly scipy's order (corners in row-major order,
//! `(w0 * w1) * w2`), so exact ties come out exactly as in nnU-Net. The winner is the label
//! with the largest score (scores clipped to [0, 1] as scikit-image does); on an exact tie the
//! nearest-neighbour label wins if it is among the best, else the smallest tied label.

// lane loops index several arrays in step on purpose (they vectorise that way)
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeSet;

use rayon::prelude::*;

use super::pass::{chain, Clip, Indicator, Vol};
use super::plan::{resample_line, AxisPlan};
use crate::mem::Zeroable;

/// An integer label type (every value fits in an i32 key that orders like the label).
pub trait Label: Copy + Ord + Default + Send + Sync + Zeroable + 'static {
    fn key(self) -> i32;
    fn from_key(k: i32) -> Self;
}

macro_rules! label_impl {
    ($($t:ty),*) => {$(
        impl Label for $t {
            #[inline(always)]
            fn key(self) -> i32 {
                self as i32
            }
            #[inline(always)]
            fn from_key(k: i32) -> Self {
                k as $t
            }
        }
    )*};
}
label_impl!(i8, i16, i32, u8, u16);

/// Per-axis taps of the one-pass kernel: up to two (index, weight) pairs with positive
/// weight, in scipy's tap order, and the nearest-neighbour index.
pub(crate) struct SegAxis {
    taps: Vec<[(u32, f64); 2]>,
    ntaps: Vec<u8>,
    nn: Vec<u32>,
}

impl SegAxis {
    /// Linear interpolation from n to m samples (order 1).
    pub fn linear(n: usize, m: usize) -> SegAxis {
        let plan = AxisPlan::new(n, m, 1);
        let nn = AxisPlan::nearest_indices(n, m);
        let mut taps = crate::mem::with_capacity("resampling plan", m);
        let mut ntaps = crate::mem::with_capacity("resampling plan", m);
        for t in &plan.taps {
            let mut row = [(0u32, 0.0f64); 2];
            let mut c = 0;
            for j in 0..2 {
                // a zero weight adds exactly +0.0 to its label's score: skipping it is exact
                if t.w[j] > 0.0 {
                    row[c] = (t.idx[j], t.w[j]);
                    c += 1;
                }
            }
            taps.push(row);
            ntaps.push(c as u8);
        }
        SegAxis {
            taps,
            ntaps,
            nn: nn.into_iter().map(|i| i as u32).collect(),
        }
    }

    /// Nearest neighbour from n to m samples (order 0; identity when n == m).
    pub fn nearest(n: usize, m: usize) -> SegAxis {
        let nn: Vec<u32> = AxisPlan::nearest_indices(n, m).into_iter().map(|i| i as u32).collect();
        SegAxis {
            taps: nn.iter().map(|&i| [(i, 1.0), (0, 0.0)]).collect(),
            ntaps: crate::mem::filled("resampling plan", m, 1),
            nn,
        }
    }

    pub fn for_order(n: usize, m: usize, order: usize) -> SegAxis {
        if order == 0 {
            SegAxis::nearest(n, m)
        } else {
            SegAxis::linear(n, m)
        }
    }

    fn len(&self) -> usize {
        self.nn.len()
    }
}

/// Resamples one label volume with per-axis linear/nearest taps into `dst` (contiguous).
pub(crate) fn onepass<L: Label>(src: &Vol<'_, L>, axes: &[SegAxis; 3], dst: &mut [L]) {
    let odims = [axes[0].len(), axes[1].len(), axes[2].len()];
    assert_eq!(dst.len(), odims.iter().product::<usize>());
    if dst.is_empty() {
        return;
    }
    let s2 = src.strides[2];
    // axis-2 taps as element offsets, padded to two taps (a second tap of weight 0 repeats the first)
    let a2 = &axes[2];
    let taps2: Vec<([isize; 2], [f64; 2], usize)> = (0..odims[2])
        .map(|k| {
            let t = a2.taps[k];
            let nt = a2.ntaps[k] as usize;
            let j1 = if nt == 2 { t[1].0 } else { t[0].0 };
            ([t[0].0 as isize * s2, j1 as isize * s2], [t[0].1, t[1].1], nt)
        })
        .collect();
    let nn2: Vec<isize> = a2.nn.iter().map(|&j| j as isize * s2).collect();
    let lo = a2.taps.iter().map(|t| t[0].0 as usize).min().unwrap_or(0);
    let hi = (0..odims[2])
        .map(|k| a2.taps[k][a2.ntaps[k] as usize - 1].0 as usize)
        .max()
        .unwrap_or(0);
    let ctx = RowCtx {
        src,
        axes,
        taps2: &taps2,
        nn2: &nn2,
        odims,
        cols: lo..hi + 1,
    };
    let wide = super::pass::simd_available();
    dst.par_chunks_mut(odims[2]).enumerate().for_each(|(r, row)| {
        if wide {
            // SAFETY: the CPU supports the features (checked at run time)
            #[cfg(target_arch = "x86_64")]
            unsafe {
                onepass_row_avx2(&ctx, r, row)
            }
        } else {
            onepass_row(&ctx, r, row)
        }
    });
}

struct RowCtx<'a, 'v, L> {
    src: &'a Vol<'v, L>,
    axes: &'a [SegAxis; 3],
    taps2: &'a [([isize; 2], [f64; 2], usize)],
    nn2: &'a [isize],
    odims: [usize; 3],
    /// input columns (axis 2) that any output voxel reads
    cols: std::ops::Range<usize>,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn onepass_row_avx2<L: Label>(ctx: &RowCtx<'_, '_, L>, r: usize, row: &mut [L]) {
    onepass_row(ctx, r, row)
}

/// Output voxels scored together (vectorised across voxels).
const CHUNK: usize = 32;
/// At most this many distinct labels are scored chunk-wise; more fall back to per voxel.
const CHUNK_LABELS: usize = 8;

/// One output row (fixed axis-0 and axis-1 indices) of the one-pass kernel.
///
/// Every voxel has 8 corners (4 axis-0/1 corners x 2 axis-2 taps; missing taps repeat an
/// existing corner with weight 0, adding an exact +0.0 to its label). A chunk of voxels
/// whose corners all agree is copied; otherwise each label present in the chunk, in
/// ascending order, is scored for all its voxels at once.
#[inline(always)]
fn onepass_row<L: Label>(ctx: &RowCtx<'_, '_, L>, r: usize, row: &mut [L]) {
    let RowCtx {
        src,
        axes,
        taps2,
        nn2,
        odims,
        ..
    } = *ctx;
    let [s0, s1, s2] = src.strides;
    let (i0, i1) = (r / odims[1], r % odims[1]);
    // the (axis 0, axis 1) corners of this row: offset and weight product w0 * w1
    let mut pre = [(0isize, 0.0f64); 4];
    let mut npre = 0;
    for t0 in 0..axes[0].ntaps[i0] as usize {
        let (j0, w0) = axes[0].taps[i0][t0];
        for t1 in 0..axes[1].ntaps[i1] as usize {
            let (j1, w1) = axes[1].taps[i1][t1];
            pre[npre] = (j0 as isize * s0 + j1 as isize * s1, w0 * w1);
            npre += 1;
        }
    }
    for p in npre..4 {
        pre[p] = (pre[0].0, 0.0);
    }
    let nn_base = axes[0].nn[i0] as isize * s0 + axes[1].nn[i1] as isize * s1;

    // how often the label changes along one input row decides the mode; busy rows then
    // collect the labels they can see (a bitmap for keys -1..=254, in registers)
    let cols = ctx.cols.clone();
    // SAFETY: `off` is a row offset from `pre` (an in-range input row) and `j` ranges over `cols`, columns of the
    // input row.
    let row_key = |off: isize, j: usize| unsafe { src.at(off + j as isize * s2) }.key();
    let mut changes = 0usize;
    let mut prev = row_key(pre[0].0, cols.start);
    for j in cols.clone() {
        let key = row_key(pre[0].0, j);
        changes += (key != prev) as usize;
        prev = key;
    }
    let busy = changes * 8 > cols.len();
    let mut bits = [0u64; 4];
    let mut in_range = true;
    if busy {
        let (mut b0, mut b1, mut b2, mut b3) = (0u64, 0u64, 0u64, 0u64);
        let mut outside = 0u32;
        for &(off, _) in &pre[..npre] {
            for j in cols.clone() {
                let b = row_key(off, j).wrapping_add(1) as u32;
                outside |= b >> 8;
                let bit = 1u64 << (b & 63);
                let w = (b >> 6) & 3;
                b0 |= if w == 0 { bit } else { 0 };
                b1 |= if w == 1 { bit } else { 0 };
                b2 |= if w == 2 { bit } else { 0 };
                b3 |= if w == 3 { bit } else { 0 };
            }
        }
        bits = [b0, b1, b2, b3];
        in_range = outside == 0;
    }
    let nset: u32 = bits.iter().map(|b| b.count_ones()).sum();
    if in_range && busy && (nset as usize) <= CHUNK_LABELS {
        let mut set = [0i32; CHUNK_LABELS];
        let mut nset = 0;
        for (i, &word) in bits.iter().enumerate() {
            let mut w = word;
            while w != 0 {
                set[nset] = i as i32 * 64 + w.trailing_zeros() as i32 - 1;
                nset += 1;
                w &= w - 1;
            }
        }
        let set = &set[..nset];
        // many boundaries: score every voxel, label by label (ascending), across lanes
        let w01 = [pre[0].1, pre[1].1, pre[2].1, pre[3].1];
        let mut keys = [[0i32; CHUNK]; 8];
        let mut w2s = [[0.0f64; CHUNK]; 2];
        let mut nnk = [0i32; CHUNK];
        for (ci, out) in row.chunks_mut(CHUNK).enumerate() {
            let k0 = ci * CHUNK;
            for k in 0..out.len() {
                let (off2, w2, _) = taps2[k0 + k];
                for p in 0..4 {
                    for t in 0..2 {
                        // SAFETY: `pre[p].0` is an in-range input row offset and `off2[t]` an in-range column offset
                        // from the order-1 taps (clamped to the axis).
                        keys[p * 2 + t][k] = unsafe { src.at(pre[p].0 + off2[t]) }.key();
                    }
                }
                w2s[0][k] = w2[0];
                w2s[1][k] = w2[1];
                // SAFETY: as above: tap offsets are clamped into the input.
                nnk[k] = unsafe { src.at(nn_base + nn2[k0 + k]) }.key();
            }
            score_block(&keys, &w2s, &w01, &nnk, set, out);
        }
        return;
    }

    // voxels whose corners disagree are collected (compacted) and scored CHUNK at a time
    let mut pending = Pending::new();
    for k in 0..row.len() {
        let (off2, w2, _) = taps2[k];
        // SAFETY: as above: tap offsets are clamped into the input.
        let first = unsafe { src.at(pre[0].0 + off2[0]) };
        let mut same = true;
        'scan: for &(off, _) in &pre {
            for &o2 in &off2 {
                // SAFETY: as above: tap offsets are clamped into the input.
                if unsafe { src.at(off + o2) } != first {
                    same = false;
                    break 'scan;
                }
            }
        }
        if same {
            row[k] = first;
            continue;
        }
        let mut key = [0i32; 8];
        let mut prod = [0.0f64; 8];
        for p in 0..4 {
            for t in 0..2 {
                // SAFETY: as above: tap offsets are clamped into the input.
                key[p * 2 + t] = unsafe { src.at(pre[p].0 + off2[t]) }.key();
                prod[p * 2 + t] = pre[p].1 * w2[t];
            }
        }
        // the usual boundary voxel has two labels: score both directly
        let ka = key[0];
        let kb = key.iter().copied().find(|&x| x != ka).unwrap_or(ka);
        if key.iter().all(|&x| x == ka || x == kb) {
            let (mut sa, mut sb) = (0.0f64, 0.0f64);
            for c in 0..8 {
                sa += if key[c] == ka { prod[c] } else { 0.0 };
                sb += if key[c] == kb { prod[c] } else { 0.0 };
            }
            let (sa, sb) = (sa.min(1.0), sb.min(1.0));
            // an exact tie goes to the nearest neighbour, which is one of the two labels
            row[k] = if sa > sb {
                L::from_key(ka)
            } else if sb > sa {
                L::from_key(kb)
            } else {
                // SAFETY: `nn_base` is the nearest input row and `nn2[k]` its nearest column, both from clamped
                // nearest-neighbour indices.
                unsafe { src.at(nn_base + nn2[k]) }
            };
            continue;
        }
        let n = pending.n;
        for c in 0..8 {
            pending.keys[c][n] = key[c] as f64;
            pending.prod[c][n] = prod[c];
        }
        // SAFETY: as above.
        pending.nnk[n] = unsafe { src.at(nn_base + nn2[k]) }.key() as f64;
        pending.at[n] = k;
        pending.n += 1;
        if pending.n == CHUNK {
            pending.flush(row);
        }
    }
    if pending.n > 0 {
        pending.flush(row);
    }
}

/// Scores a block of consecutive voxels of a row for the given labels (ascending, covering
/// every corner) and writes the winners to `out` (its length is the number of voxels).
/// Corner `p * 2 + t` weighs `w01[p] * w2s[t][k]`, exactly scipy's product.
#[inline(always)]
fn score_block<L: Label>(
    keys: &[[i32; CHUNK]; 8],
    w2s: &[[f64; CHUNK]; 2],
    w01: &[f64; 4],
    nnk: &[i32; CHUNK],
    labels: &[i32],
    out: &mut [L],
) {
    let mut prod = [[0.0f64; CHUNK]; 8];
    for p in 0..4 {
        for t in 0..2 {
            for k in 0..CHUNK {
                prod[p * 2 + t][k] = w01[p] * w2s[t][k];
            }
        }
    }
    let mut best = [f64::NEG_INFINITY; CHUNK];
    let mut win = [0i32; CHUNK];
    let mut nn_score = [0.0f64; CHUNK];
    for &label in labels {
        let mut sc = [0.0f64; CHUNK];
        for (krow, prow) in keys.iter().zip(&prod) {
            for k in 0..CHUNK {
                sc[k] += if krow[k] == label { prow[k] } else { 0.0 };
            }
        }
        for k in 0..CHUNK {
            let v = if sc[k] > 1.0 { 1.0 } else { sc[k] };
            // ascending labels with a strict '>' keep the smallest label among equals
            let better = v > best[k];
            best[k] = if better { v } else { best[k] };
            win[k] = if better { label } else { win[k] };
            nn_score[k] = if nnk[k] == label { v } else { nn_score[k] };
        }
    }
    for (k, o) in out.iter_mut().enumerate() {
        let key = if nn_score[k] == best[k] && best[k] > 0.0 {
            nnk[k]
        } else {
            win[k]
        };
        *o = L::from_key(key);
    }
}

/// Non-uniform voxels of a row waiting to be scored: corner keys (as f64) and weight
/// products per corner, nearest-neighbour key, and the voxel's index in the row.
struct Pending {
    keys: [[f64; CHUNK]; 8],
    prod: [[f64; CHUNK]; 8],
    nnk: [f64; CHUNK],
    at: [usize; CHUNK],
    n: usize,
}

impl Pending {
    fn new() -> Self {
        Pending {
            keys: [[0.0; CHUNK]; 8],
            prod: [[0.0; CHUNK]; 8],
            nnk: [0.0; CHUNK],
            at: [0; CHUNK],
            n: 0,
        }
    }

    /// Scores the pending voxels label by label (ascending) across all lanes and writes them.
    #[inline(always)]
    fn flush<L: Label>(&mut self, row: &mut [L]) {
        let n = self.n;
        self.n = 0;
        // unused lanes repeat lane 0 (their results are not written)
        for c in 0..8 {
            for k in n..CHUNK {
                self.keys[c][k] = self.keys[c][0];
                self.prod[c][k] = self.prod[c][0];
            }
        }
        for k in n..CHUNK {
            self.nnk[k] = self.nnk[0];
        }
        let (keys, prod, nnk) = (&self.keys, &self.prod, &self.nnk);
        let mut best = [f64::NEG_INFINITY; CHUNK];
        let mut win = [0.0f64; CHUNK];
        let mut nn_score = [0.0f64; CHUNK];
        // labels in ascending order: the smallest key above the previous one
        let mut label = f64::NEG_INFINITY;
        let mut done = false;
        for _ in 0..CHUNK_LABELS {
            // per-lane minimum first (element-wise, vectorises), then across lanes
            let mut lane_min = [f64::INFINITY; CHUNK];
            for krow in keys {
                for k in 0..CHUNK {
                    let x = krow[k];
                    lane_min[k] = if x > label && x < lane_min[k] { x } else { lane_min[k] };
                }
            }
            let next = lane_min.iter().fold(f64::INFINITY, |a, &b| if b < a { b } else { a });
            if next == f64::INFINITY {
                done = true;
                break;
            }
            label = next;
            let mut sc = [0.0f64; CHUNK];
            for (krow, prow) in keys.iter().zip(prod) {
                for k in 0..CHUNK {
                    sc[k] += if krow[k] == label { prow[k] } else { 0.0 };
                }
            }
            for k in 0..CHUNK {
                let v = if sc[k] > 1.0 { 1.0 } else { sc[k] };
                // ascending labels with a strict '>' keep the smallest label among equals
                let better = v > best[k];
                best[k] = if better { v } else { best[k] };
                win[k] = if better { label } else { win[k] };
                nn_score[k] = if nnk[k] == label { v } else { nn_score[k] };
            }
        }
        for k in 0..n {
            let key = if done {
                if nn_score[k] == best[k] && best[k] > 0.0 {
                    nnk[k]
                } else {
                    win[k]
                }
            } else {
                // many labels meet in this chunk: decide voxel by voxel
                let mut kk = [0i32; 8];
                let mut p = [0.0f64; 8];
                for c in 0..8 {
                    kk[c] = keys[c][k] as i32;
                    p[c] = prod[c][k];
                }
                decide_corners(&kk, &p, nnk[k] as i32) as f64
            };
            row[self.at[k]] = L::from_key(key as i32);
        }
    }
}

/// The winner at one voxel from its 8 corners (label keys and weight products, in scipy's
/// order). A label's score is the sum of its corners' products in that order (the other
/// corners add an exact +0.0), clipped to 1 as scikit-image clips the indicator's resize; the
/// largest score wins, an exact tie goes to the nearest-neighbour label if it is among the
/// best, else to the smallest tied label. Branch-free over fixed lanes (vectorises).
#[inline(always)]
fn decide_corners(key: &[i32; 8], p: &[f64; 8], nn_key: i32) -> i32 {
    // keys as f64 (exact for i32) so that masks and scores share lane width
    let kf: [f64; 8] = key.map(|k| k as f64);
    // s[c] = score of corner c's label
    let mut s = [0.0f64; 8];
    for c2 in 0..8 {
        let (k2, p2) = (kf[c2], p[c2]);
        for c in 0..8 {
            s[c] += if kf[c] == k2 { p2 } else { 0.0 };
        }
    }
    let mut best = f64::NEG_INFINITY;
    for v in s.iter_mut() {
        *v = if *v > 1.0 { 1.0 } else { *v };
        best = if *v > best { *v } else { best };
    }
    let nn = nn_key as f64;
    let mut win = f64::INFINITY;
    let mut nn_score = 0.0f64;
    for c in 0..8 {
        let k = if s[c] == best { kf[c] } else { f64::INFINITY };
        win = if k < win { k } else { win };
        nn_score = if kf[c] == nn { s[c] } else { nn_score };
    }
    if nn_score == best && best > 0.0 {
        nn_key
    } else {
        win as i32
    }
}

/// [`decide_corners`] for up to 8 (label, weight) corners.
#[cfg(test)]
fn decide<L: Label>(labels: &[L], scores: &mut [f64], nn_label: L) -> L {
    let mut key = [labels[0].key(); 8];
    let mut p = [0.0; 8];
    for (c, (&l, &w)) in labels.iter().zip(scores.iter()).enumerate() {
        key[c] = l.key();
        p[c] = w;
    }
    L::from_key(decide_corners(&key, &p, nn_label.key()))
}

/// Sorted distinct values of a label volume.
pub(crate) fn unique_labels<L: Label>(vol: &Vol<'_, L>) -> Vec<L> {
    let [d0, d1, d2] = vol.dims;
    let set = (0..d0 * d1)
        .into_par_iter()
        .fold(BTreeSet::new, |mut set, r| {
            let base = vol.offset([r / d1, r % d1, 0]);
            let mut last = None;
            for i2 in 0..d2 {
                // SAFETY: `base` is the offset of row `r` (< d0 * d1) and `i2 < d2`.
                let v = unsafe { vol.at(base + i2 as isize * vol.strides[2]) };
                if last != Some(v) {
                    set.insert(v);
                    last = Some(v);
                }
            }
            set
        })
        .reduce(BTreeSet::new, |mut a, b| {
            a.extend(b);
            a
        });
    set.into_iter().collect()
}

/// The general argmax path (any order, used for order 3): every label's indicator is
/// resized with the separable passes `steps` (f64 throughout), clipped to [0, 1], and the
/// per-voxel winner kept incrementally. `nn` are the nearest-neighbour indices per axis.
/// With no steps the output is a copy of the input (scipy returns unit-zoom inputs as is).
pub(crate) fn argmax_general<L: Label>(
    src: &Vol<'_, L>,
    steps: &[(usize, &AxisPlan)],
    nn: &[Vec<usize>; 3],
    dst: &mut [L],
) {
    let odims = [nn[0].len(), nn[1].len(), nn[2].len()];
    let len: usize = odims.iter().product();
    assert_eq!(dst.len(), len);
    let nn_labels = |out: &mut [L]| {
        out.par_chunks_mut(odims[2]).enumerate().for_each(|(r, row)| {
            let (i0, i1) = (r / odims[1], r % odims[1]);
            for (k, o) in row.iter_mut().enumerate() {
                // SAFETY: nearest-neighbour indices are clamped to each input axis.
                *o = unsafe { src.get([nn[0][i0], nn[1][i1], nn[2][k]]) };
            }
        })
    };
    if steps.is_empty() || len == 0 {
        nn_labels(dst);
        return;
    }
    let labels = unique_labels(src);
    if labels.len() == 1 {
        dst.fill(labels[0]);
        return;
    }
    let what = "label resampling buffer";
    let mut nearest = crate::mem::filled(what, len, L::default());
    nn_labels(&mut nearest);
    let mut best = crate::mem::filled(what, len, f64::NEG_INFINITY);
    let mut nn_score: Vec<f64> = crate::mem::zeroed(what, len);
    let mut win: Vec<u32> = crate::mem::zeroed(what, len);
    let mut score: Vec<f64> = crate::mem::zeroed(what, len);
    let chunk = 4096;
    for (li, &label) in labels.iter().enumerate() {
        chain::<_, f64, f64, f64>(&Indicator { vol: *src, label }, steps, &mut score, &Clip::All(0.0, 1.0));
        best.par_chunks_mut(chunk)
            .zip(win.par_chunks_mut(chunk))
            .zip(nn_score.par_chunks_mut(chunk))
            .zip(score.par_chunks(chunk).zip(nearest.par_chunks(chunk)))
            .for_each(|(((b, w), ns), (s, nl))| {
                for i in 0..b.len() {
                    if s[i] > b[i] {
                        b[i] = s[i];
                        w[i] = li as u32;
                    }
                    if nl[i] == label {
                        ns[i] = s[i];
                    }
                }
            });
    }
    dst.par_chunks_mut(chunk)
        .zip(best.par_chunks(chunk))
        .zip(win.par_chunks(chunk).zip(nn_score.par_chunks(chunk)))
        .zip(nearest.par_chunks(chunk))
        .for_each(|(((d, b), (w, ns)), nl)| {
            for i in 0..d.len() {
                d[i] = if ns[i] == b[i] && b[i] > 0.0 {
                    nl[i]
                } else {
                    labels[w[i] as usize]
                };
            }
        });
}

use crate::mem::SendPtr;

/// nnU-Net's separate-axis step for segmentations with `order_z > 0`: along `axis`, each
/// label of a line (ascending) is written where its interpolated indicator exceeds 0.5;
/// voxels that no label reaches are 0. `dst` is contiguous with `dims[axis] = plan.m`.
pub(crate) fn threshold_axis<L: Label>(src: &Vol<'_, L>, axis: usize, plan: &AxisPlan, dst: &mut [L]) {
    let dims = src.dims;
    let mut odims = dims;
    odims[axis] = plan.m;
    assert_eq!(dst.len(), odims.iter().product::<usize>());
    let inner: usize = dims[axis + 1..].iter().product();
    let outer: usize = dims[..axis].iter().product();
    let dp = SendPtr(dst.as_mut_ptr());
    let (n, m) = (plan.n, plan.m);
    (0..outer * inner).into_par_iter().for_each_init(
        || {
            (
                Vec::new(),
                vec![0.0; n],
                vec![0.0; m],
                Vec::new(),
                vec![L::default(); m],
            )
        },
        |(scratch, ind, score, labels, out), line| {
            // capture the Send wrapper, not its raw-pointer field
            #[allow(clippy::redundant_locals)]
            let dp = dp;
            let (o, i) = (line / inner, line % inner);
            let mut pos = [0usize; 3];
            let mut rem = o;
            for a in (0..axis).rev() {
                pos[a] = rem % dims[a];
                rem /= dims[a];
            }
            let mut rem = i;
            for a in (axis + 1..3).rev() {
                pos[a] = rem % dims[a];
                rem /= dims[a];
            }
            let base = src.offset(pos);
            let s_ax = src.strides[axis];
            // SAFETY: `base` is the offset of an in-range line along `axis` and `j < n`, the input length of that
            // axis.
            let vals: Vec<L> = (0..n).map(|j| unsafe { src.at(base + j as isize * s_ax) }).collect();
            labels.clear();
            labels.extend_from_slice(&vals);
            labels.sort_unstable();
            labels.dedup();
            out.fill(L::default());
            for &label in labels.iter() {
                for (x, &v) in ind.iter_mut().zip(&vals) {
                    *x = if v == label { 1.0 } else { 0.0 };
                }
                resample_line(plan, ind, scratch, score);
                for (d, &s) in out.iter_mut().zip(score.iter()) {
                    if s > 0.5 {
                        *d = label;
                    }
                }
            }
            let dbase = (o * m * inner + i) as isize;
            for (k, &v) in out.iter().enumerate() {
                // SAFETY: `dbase + k * inner` is element `k < m` of this task's output line; lines are disjoint
                // between tasks and inside `dst` (its length is `outer * m * inner`).
                unsafe { *dp.0.offset(dbase + (k * inner) as isize) = v };
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn decide_rules() {
        // clear winner
        assert_eq!(decide(&[0i8, 1], &mut [0.3, 0.7], 0), 1);
        // exact tie: nearest neighbour among the best wins
        assert_eq!(decide(&[0i8, 2], &mut [0.5, 0.5], 2), 2);
        assert_eq!(decide(&[2i8, 0], &mut [0.5, 0.5], 2), 2);
        // nearest neighbour not among the best: smallest tied label
        assert_eq!(decide(&[3i8, 1, 2], &mut [0.25, 0.375, 0.375], 3), 1);
        assert_eq!(decide(&[-1i8, 5], &mut [0.5, 0.5], 7), -1);
    }

    #[test]
    fn onepass_never_invents_labels() {
        // [0, 0, 2] upsampled along the last axis: 1 never appears
        let a = Array3::from_shape_vec((1, 1, 3), vec![0i16, 0, 2]).unwrap();
        let v = a.view();
        let vol = Vol::from_view(&v);
        let axes = [SegAxis::linear(1, 1), SegAxis::linear(1, 1), SegAxis::linear(3, 7)];
        let mut out = vec![0i16; 7];
        onepass(&vol, &axes, &mut out);
        assert!(out.iter().all(|&x| x == 0 || x == 2), "{out:?}");
        assert_eq!(out[0], 0);
        assert_eq!(out[6], 2);
    }

    #[test]
    fn onepass_downsample_tie_goes_to_nearest() {
        // 4 -> 2 along the last axis: coordinates 0.5 and 2.5, exact ties [1 | 2] and [3 | 4];
        // the nearest neighbours are samples 1 and 3 (floor(cc + 0.5))
        let a = Array3::from_shape_vec((1, 1, 4), vec![1u8, 2, 3, 4]).unwrap();
        let v = a.view();
        let vol = Vol::from_view(&v);
        let axes = [SegAxis::linear(1, 1), SegAxis::linear(1, 1), SegAxis::linear(4, 2)];
        let mut out = vec![0u8; 2];
        onepass(&vol, &axes, &mut out);
        assert_eq!(out, vec![2, 4]);
    }

    #[test]
    fn threshold_leaves_half_way_voxels_zero() {
        // labels 3 and 5 on two slices, upsampled 2 -> 4 linearly along axis 0:
        // coordinates -0.25, 0.25, 0.75, 1.25 -> weights 1, .75/.25, .25/.75, 1
        let a = Array3::from_shape_vec((2, 1, 1), vec![3i32, 5]).unwrap();
        let v = a.view();
        let vol = Vol::from_view(&v);
        let plan = AxisPlan::new(2, 4, 1);
        let mut out = vec![0i32; 4];
        threshold_axis(&vol, 0, &plan, &mut out);
        assert_eq!(out, vec![3, 3, 5, 5]);
        // 2 -> 3: the middle sample sits exactly half way: no label exceeds 0.5
        let plan = AxisPlan::new(2, 3, 1);
        let mut out = vec![9i32; 3];
        threshold_axis(&vol, 0, &plan, &mut out);
        assert_eq!(out, vec![3, 0, 5]);
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

    /// `cargo test --release -p oxunet-core time_onepass -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn time_onepass() {
        let d = 160usize;
        let axes = [
            SegAxis::linear(d, 123),
            SegAxis::linear(d, 123),
            SegAxis::linear(d, 123),
        ];
        let mut out = vec![0i8; 123 * 123 * 123];
        // blobby labels (boundaries every few voxels) and uniformly random labels
        let blobby: Vec<i8> = (0..d * d * d)
            .map(|i| {
                let (x, y, z) = (i / (d * d), (i / d) % d, i % d);
                (((x / 7) + (y / 5) + (z / 6)) % 4) as i8
            })
            .collect();
        let mut x = 12345u64;
        let random: Vec<i8> = (0..d * d * d)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 33) % 4) as i8
            })
            .collect();
        // a fixed reference workload, to read timings on a busy machine as ratios
        let calib: Vec<f32> = (0..d * d * d).map(|i| (i % 977) as f32).collect();
        let cvol = Vol::from_slice(&calib, [d, d, d]);
        let plan = super::super::plan::AxisPlan::new(d, 123, 3);
        let mut cout = vec![0f32; 123 * d * d];
        // the benchmark's own input, when present (np.save'd int8 160^3)
        let bench: Vec<i8> = match std::fs::read("/tmp/rs/in_iso_seg.npy") {
            Ok(b) if b.len() >= d * d * d => b[b.len() - d * d * d..].iter().map(|&v| v as i8).collect(),
            _ => blobby.clone(),
        };
        let uniform = vec![3i8; d * d * d];
        for (name, src) in [
            ("blobby", &blobby),
            ("random", &random),
            ("bench", &bench),
            ("uniform", &uniform),
        ] {
            let vol = Vol::from_slice(src, [d, d, d]);
            let ms = best_of(10, || onepass(&vol, &axes, &mut out));
            let cal = best_of(10, || {
                super::super::pass::axis_pass::<f32, _, _>(&cvol, 0, &plan, &mut cout, &super::super::pass::Clip::None)
            });
            eprintln!(
                "onepass 160^3 -> 123^3, 4 {name} labels: {ms:.1} ms = {:.2} x reference pass",
                ms / cal
            );
        }
    }
}
