//! Class locations for foreground oversampling (nnU-Net's
//! `DefaultPreprocessor._sample_foreground_locations`), without sorting or materialising
//! every foreground coordinate.
//!
//! Algorithm (two passes over the seg, both parallel over fixed chunks of the raster):
//! 1. count, per chunk, the voxels of every requested label (labels map to dense slots
//!    through a small lookup table; a block of 64 voxels none of which can be a requested
//!    label is skipped with one vectorised range test);
//! 2. per class (a set of label slots): `n` = voxels having any of its labels, `k` from
//!    nnU-Net's rule, and `k` distinct ordinals of `[0, n)` drawn uniformly without
//!    replacement (Floyd), sorted, so ordinal `i` = the `i`-th voxel of the class in raster order;
//! 3. the per-chunk counts tell which chunk holds which ordinals; only chunks holding a
//!    selected ordinal are scanned again, turning ordinals into flat indices, which are
//!    finally unravelled into coordinates (rows come out in raster order).

use ndarray::{Array2, ArrayViewD};
use rayon::prelude::*;

use super::rng::{sample_without_replacement, Rng};
use crate::{KernelError, KernelResult};

/// Integer label types a seg may have.
pub trait Label: Copy + Send + Sync + PartialOrd + 'static {
    const MIN: i64;
    const MAX: i64;
    fn to_i64(self) -> i64;
    /// Only called with values in `[MIN, MAX]`.
    fn from_i64(v: i64) -> Self;
}

macro_rules! impl_label {
    ($($t:ty),*) => {$(
        impl Label for $t {
            const MIN: i64 = <$t>::MIN as i64;
            const MAX: i64 = <$t>::MAX as i64;
            #[inline(always)]
            fn to_i64(self) -> i64 { self as i64 }
            #[inline(always)]
            fn from_i64(v: i64) -> Self { v as $t }
        }
    )*};
}
impl_label!(i8, i16, i32, u8, u16, u32);

/// nnU-Net's sample count for a class of `n` voxels:
/// `max(min(min_num_samples, n), ceil(n * min_percent_coverage))`, computed with the same
/// float64 arithmetic as `int(np.ceil(total * min_percent_coverage))`, capped at `n`.
pub fn num_samples(n: u64, min_num_samples: u64, min_percent_coverage: f64) -> u64 {
    let by_count = min_num_samples.min(n);
    let by_share = (n as f64 * min_percent_coverage).ceil();
    let by_share = if by_share <= 0.0 { 0 } else { by_share as u64 };
    by_count.max(by_share).min(n)
}

const BLOCK: usize = 64;
/// Largest label span (max − min + 1) served by dense lookup tables.
const DENSE_SPAN_MAX: u64 = 1 << 20;
/// Largest total size (bytes) of the per-class dense membership tables.
const DENSE_MEMBER_MAX: u64 = 1 << 26;
/// Largest label span counted by value in pass 1.
const VALUE_HISTOGRAM_MAX: usize = 256;

/// True if any value of `block` lies in `[lo, hi]` (vectorises to a few compares per block).
#[inline(always)]
fn any_in_range<T: Label>(block: &[T], lo: T, hi: T) -> bool {
    block.iter().fold(false, |acc, &v| acc | ((v >= lo) & (v <= hi)))
}

/// Label value → slot in `0..n_slots`, or `n_slots` for a label no class asks for.
enum SlotLookup {
    Dense { min: i64, lut: Vec<u32> },
    Sparse { labels: Vec<i64> },
}

/// Pass 1 on one chunk: `counts[s]` = voxels of slot `s`. Four interleaved tables break the
/// load-add-store dependency of long runs of one label.
#[inline(always)]
fn count_chunk<T: Label>(vox: &[T], lo: T, hi: T, n_slots: usize, slot_of: impl Fn(T) -> usize, counts: &mut [u32]) {
    let w = n_slots + 1;
    let mut local = vec![0u32; 4 * w];
    let (t0, rest) = local.split_at_mut(w);
    let (t1, rest) = rest.split_at_mut(w);
    let (t2, t3) = rest.split_at_mut(w);
    for block in vox.chunks(BLOCK) {
        if !any_in_range(block, lo, hi) {
            continue;
        }
        let mut quads = block.chunks_exact(4);
        for q in &mut quads {
            t0[slot_of(q[0])] += 1;
            t1[slot_of(q[1])] += 1;
            t2[slot_of(q[2])] += 1;
            t3[slot_of(q[3])] += 1;
        }
        for &v in quads.remainder() {
            t0[slot_of(v)] += 1;
        }
    }
    for s in 0..n_slots {
        counts[s] = t0[s] + t1[s] + t2[s] + t3[s];
    }
}

/// Pass 2 for one class on one chunk: writes to `out` the chunk offsets (plus `base`) of the
/// class's voxels with ordinals `wanted` (sorted), `ord` being the class's ordinal of the
/// chunk's first member. Blocks that cannot hold the next wanted ordinal are skipped after a
/// branch-free member count.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn locate_chunk<T: Label>(
    vox: &[T],
    lo: T,
    hi: T,
    is_member: impl Fn(T) -> bool,
    mut ord: u64,
    wanted: &[u64],
    out: &mut [u64],
    base: u64,
) {
    let n = wanted.len();
    if n == 0 {
        return;
    }
    let mut j = 0usize;
    let mut target = wanted[0];
    let mut pos = base;
    for block in vox.chunks(BLOCK) {
        if any_in_range(block, lo, hi) {
            let cnt: u64 = block.iter().map(|&v| is_member(v) as u64).sum();
            if ord + cnt <= target {
                ord += cnt;
            } else {
                for (i, &v) in block.iter().enumerate() {
                    if is_member(v) {
                        if ord == target {
                            out[j] = pos + i as u64;
                            j += 1;
                            if j == n {
                                return;
                            }
                            target = wanted[j];
                        }
                        ord += 1;
                    }
                }
            }
        }
        pos += block.len() as u64;
    }
    unreachable!("pass 2 found {j} of {n} wanted voxels in a chunk");
}

/// Class membership by label value.
enum Member {
    /// `lut[v - min] != 0`; the table spans all requested labels.
    Dense { min: i64, lut: Vec<u8> },
    /// Through the slot lookup: `member[slot_of(v)]` (`member[n_slots]` = false).
    BySlot { member: Vec<bool> },
}

/// Rows = per class, the `k × seg.ndim` int64 coordinates of the drawn voxels in raster order.
///
/// `classes[c]` lists the labels of class `c` (one label, or several for a region; labels
/// outside `T`'s range simply never match, repeats are ignored). Class `c` draws from its own
/// random stream `(seed, c)`, so its result does not depend on the other classes.
pub fn sample_class_locations<T: Label>(
    seg: ArrayViewD<'_, T>,
    classes: &[Vec<i64>],
    seed: u64,
    min_num_samples: u64,
    min_percent_coverage: f64,
) -> KernelResult<Vec<Array2<i64>>> {
    let ndim = seg.ndim();
    if ndim == 0 {
        return Err(KernelError::shape(
            "seg",
            "expected at least 1 dimension, got a 0-d array",
        ));
    }
    if !(min_percent_coverage.is_finite() && (0.0..=1.0).contains(&min_percent_coverage)) {
        return Err(KernelError::invalid(
            "min_percent_coverage",
            format!("must be in [0, 1], got {min_percent_coverage}"),
        ));
    }
    let n_classes = classes.len();

    // Distinct requested labels that T can represent → slots 0..L (sorted by value);
    // each class keeps its distinct in-range labels.
    let class_labels: Vec<Vec<i64>> = classes
        .iter()
        .map(|c| {
            let mut l: Vec<i64> = c.iter().copied().filter(|&v| v >= T::MIN && v <= T::MAX).collect();
            l.sort_unstable();
            l.dedup();
            l
        })
        .collect();
    let mut labels: Vec<i64> = class_labels.iter().flatten().copied().collect();
    labels.sort_unstable();
    labels.dedup();
    let n_slots = labels.len();
    let slot_index = |v: i64| labels.binary_search(&v).expect("label was collected");
    let class_slots: Vec<Vec<usize>> = class_labels
        .iter()
        .map(|l| l.iter().map(|&v| slot_index(v)).collect())
        .collect();

    let shape: Vec<usize> = seg.shape().to_vec();
    if n_slots == 0 || seg.is_empty() {
        return Ok((0..n_classes).map(|_| Array2::<i64>::zeros((0, ndim))).collect());
    }

    let std = seg.as_standard_layout();
    let data: &[T] = std.as_slice().expect("standard layout is contiguous");
    let n_vox = data.len();

    let (lo_i, hi_i) = (labels[0], labels[n_slots - 1]);
    let (lo, hi) = (T::from_i64(lo_i), T::from_i64(hi_i));
    let span = (hi_i - lo_i) as u64 + 1;
    let lookup = if span <= DENSE_SPAN_MAX {
        let mut lut = vec![n_slots as u32; span as usize];
        for (s, &v) in labels.iter().enumerate() {
            lut[(v - lo_i) as usize] = s as u32;
        }
        SlotLookup::Dense { min: lo_i, lut }
    } else {
        SlotLookup::Sparse { labels: labels.clone() }
    };
    let slot_of_dense = |min: i64, lut: &[u32], v: T| -> usize {
        let d = v.to_i64().wrapping_sub(min) as u64;
        if d < lut.len() as u64 {
            lut[d as usize] as usize
        } else {
            n_slots
        }
    };
    let slot_of_sparse = |labels: &[i64], v: T| -> usize { labels.binary_search(&v.to_i64()).unwrap_or(n_slots) };

    // Chunking: big enough that the per-chunk count table stays small (≤ ~4 M entries),
    // small enough that pass 2 can skip the chunks without a selected voxel.
    // Each chunk also zeroes 4 × (n_slots + 1) local counters: keep that well below its data.
    let chunk = {
        let by_table = (n_vox as u128 * n_slots as u128).div_ceil(1 << 22).min(1 << 30) as usize;
        by_table.max(8192).max(16 * (n_slots + 1)).div_ceil(BLOCK) * BLOCK
    };
    let n_chunks = n_vox.div_ceil(chunk);

    // Pass 1: per-chunk, per-slot counts.
    let mut table = vec![0u32; n_chunks * n_slots];
    data.par_chunks(chunk)
        .zip(table.par_chunks_mut(n_slots))
        .for_each(|(vox, counts)| match &lookup {
            SlotLookup::Dense { min, lut } if lut.len() <= VALUE_HISTOGRAM_MAX => {
                // Histogram by label value (one load less per voxel), then fold values into slots.
                let n_bins = lut.len();
                let mut hist = vec![0u32; n_bins];
                let bin_of = |v: T| (v.to_i64().wrapping_sub(*min) as u64).min(n_bins as u64) as usize;
                count_chunk(vox, lo, hi, n_bins, bin_of, &mut hist);
                for (d, &h) in hist.iter().enumerate() {
                    let s = lut[d] as usize;
                    if s < n_slots {
                        counts[s] += h;
                    }
                }
            }
            SlotLookup::Dense { min, lut } => {
                count_chunk(vox, lo, hi, n_slots, |v| slot_of_dense(*min, lut, v), counts)
            }
            SlotLookup::Sparse { labels } => count_chunk(vox, lo, hi, n_slots, |v| slot_of_sparse(labels, v), counts),
        });

    // Per class: exclusive prefix of its voxel count over chunks (length n_chunks + 1).
    let prefixes: Vec<Vec<u64>> = class_slots
        .par_iter()
        .map(|slots| {
            let mut p = Vec::with_capacity(n_chunks + 1);
            let mut acc = 0u64;
            p.push(0);
            for ch in 0..n_chunks {
                let row = &table[ch * n_slots..(ch + 1) * n_slots];
                acc += slots.iter().map(|&s| row[s] as u64).sum::<u64>();
                p.push(acc);
            }
            p
        })
        .collect();
    drop(table);

    // Draw the ordinals.
    let selections: Vec<Vec<u64>> = prefixes
        .par_iter()
        .enumerate()
        .map(|(c, p)| {
            let n = *p.last().unwrap();
            let k = num_samples(n, min_num_samples, min_percent_coverage);
            let mut rng = Rng::new(seed, c as u64);
            sample_without_replacement(n, k, &mut rng)
        })
        .collect();

    // Which selected ordinals fall into which chunk: bounds[c][ch]..bounds[c][ch + 1].
    let bounds: Vec<Vec<usize>> = selections
        .iter()
        .zip(&prefixes)
        .map(|(sel, p)| {
            let mut b = Vec::with_capacity(n_chunks + 1);
            let mut i = 0usize;
            for &start in p.iter() {
                while i < sel.len() && sel[i] < start {
                    i += 1;
                }
                b.push(i);
            }
            b
        })
        .collect();

    // Class membership tables and label ranges for pass 2.
    let dense_members = matches!(lookup, SlotLookup::Dense { .. }) && span * n_classes as u64 <= DENSE_MEMBER_MAX;
    let members: Vec<Member> = class_slots
        .iter()
        .map(|slots| {
            if dense_members {
                let mut lut = vec![0u8; span as usize];
                for &s in slots {
                    lut[(labels[s] - lo_i) as usize] = 1;
                }
                Member::Dense { min: lo_i, lut }
            } else {
                let mut member = vec![false; n_slots + 1];
                for &s in slots {
                    member[s] = true;
                }
                Member::BySlot { member }
            }
        })
        .collect();
    let ranges: Vec<(T, T)> = class_labels
        .iter()
        .map(|l| match (l.first(), l.last()) {
            (Some(&a), Some(&b)) => (T::from_i64(a), T::from_i64(b)),
            _ => (hi, lo), // empty class: never scanned (no selection)
        })
        .collect();

    // Pass 2: selected ordinals → flat indices, writing into disjoint slices; a chunk's task
    // lists only the classes with a selected ordinal in it.
    let mut flat: Vec<Vec<u64>> = selections.iter().map(|s| vec![0u64; s.len()]).collect();
    {
        let mut tasks: Vec<Vec<(usize, &mut [u64])>> = (0..n_chunks).map(|_| Vec::new()).collect();
        for (c, out) in flat.iter_mut().enumerate() {
            let mut rest: &mut [u64] = out.as_mut_slice();
            for (ch, task) in tasks.iter_mut().enumerate() {
                let len = bounds[c][ch + 1] - bounds[c][ch];
                if len > 0 {
                    let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
                    task.push((c, head));
                    rest = tail;
                }
            }
        }
        tasks.into_par_iter().enumerate().for_each(|(ch, outs)| {
            let base = ch * chunk;
            let vox = &data[base..(base + chunk).min(n_vox)];
            for (c, out) in outs {
                let wanted = &selections[c][bounds[c][ch]..bounds[c][ch + 1]];
                let ord = prefixes[c][ch];
                let (clo, chi) = ranges[c];
                match (&members[c], &lookup) {
                    (Member::Dense { min, lut }, _) => {
                        let is_member = |v: T| {
                            let d = v.to_i64().wrapping_sub(*min) as u64;
                            (d < lut.len() as u64) && lut[d as usize] != 0
                        };
                        locate_chunk(vox, clo, chi, is_member, ord, wanted, out, base as u64)
                    }
                    (Member::BySlot { member }, SlotLookup::Dense { min, lut }) => {
                        let is_member = |v: T| member[slot_of_dense(*min, lut, v)];
                        locate_chunk(vox, clo, chi, is_member, ord, wanted, out, base as u64)
                    }
                    (Member::BySlot { member }, SlotLookup::Sparse { labels }) => {
                        let is_member = |v: T| member[slot_of_sparse(labels, v)];
                        locate_chunk(vox, clo, chi, is_member, ord, wanted, out, base as u64)
                    }
                }
            }
        });
    }
    drop(std);

    // Flat indices → coordinates (all classes in parallel).
    Ok(flat.par_iter().map(|f| unravel(f, &shape)).collect())
}

/// Exact division of 32-bit numerators by a fixed divisor through one 64×64→128 multiply
/// (Lemire, Kaser & Kurz 2019, "Faster remainder by direct computation").
#[derive(Clone, Copy)]
struct FastDiv32 {
    d: u32,
    m: u64,
}

impl FastDiv32 {
    fn new(d: u32) -> Self {
        assert!(d > 0);
        // d == 1 would need m = 2^64; it is special-cased in divmod.
        let m = if d == 1 { 0 } else { u64::MAX / d as u64 + 1 };
        FastDiv32 { d, m }
    }

    #[inline(always)]
    fn divmod(self, n: u32) -> (u32, u32) {
        if self.d == 1 {
            return (n, 0);
        }
        let q = ((self.m as u128 * n as u128) >> 64) as u32;
        (q, n - q * self.d)
    }
}

/// C-order flat indices → `(len, ndim)` coordinates.
fn unravel(flat: &[u64], shape: &[usize]) -> Array2<i64> {
    let ndim = shape.len();
    let n_vox: usize = shape.iter().product();
    let mut out = vec![0i64; flat.len() * ndim];
    const ROWS: usize = 4096;
    if n_vox <= u32::MAX as usize {
        let divs: Vec<FastDiv32> = shape.iter().map(|&s| FastDiv32::new(s as u32)).collect();
        out.par_chunks_mut(ndim * ROWS)
            .zip(flat.par_chunks(ROWS))
            .for_each(|(rows, idx)| {
                for (row, &fi) in rows.chunks_exact_mut(ndim).zip(idx) {
                    let mut rem = fi as u32;
                    for d in (0..ndim).rev() {
                        let (q, r) = divs[d].divmod(rem);
                        row[d] = r as i64;
                        rem = q;
                    }
                }
            });
    } else {
        out.par_chunks_mut(ndim * ROWS)
            .zip(flat.par_chunks(ROWS))
            .for_each(|(rows, idx)| {
                for (row, &fi) in rows.chunks_exact_mut(ndim).zip(idx) {
                    let mut rem = fi;
                    for d in (0..ndim).rev() {
                        let sz = shape[d] as u64;
                        row[d] = (rem % sz) as i64;
                        rem /= sz;
                    }
                }
            });
    }
    Array2::from_shape_vec((flat.len(), ndim), out).expect("shape matches")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn seg_from(shape: &[usize], f: impl Fn(usize) -> i16) -> ArrayD<i16> {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(f).collect()).unwrap()
    }

    #[test]
    fn count_rule_matches_nnunet_arithmetic() {
        assert_eq!(num_samples(0, 10000, 0.01), 0);
        assert_eq!(num_samples(5, 10000, 0.01), 5);
        assert_eq!(num_samples(10000, 10000, 0.01), 10000);
        assert_eq!(num_samples(1_000_000, 10000, 0.01), 10000);
        assert_eq!(num_samples(1_000_001, 10000, 0.01), 10001);
        assert_eq!(num_samples(2_500_000, 10000, 0.01), 25000);
        assert_eq!(num_samples(7, 0, 0.5), 4);
    }

    #[test]
    fn every_location_carries_its_class_and_counts_are_exact() {
        let shape = [3usize, 37, 41];
        let seg = seg_from(&shape, |i| ((i * 7919) % 13) as i16 - 1); // labels -1..11
        let classes = vec![
            vec![1],
            vec![2, 3],
            vec![-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            vec![99],
            vec![],
        ];
        let out = sample_class_locations(seg.view(), &classes, 1234, 10000, 0.01).unwrap();
        for (c, locs) in classes.iter().zip(&out) {
            let n = seg.iter().filter(|v| c.contains(&(**v as i64))).count() as u64;
            assert_eq!(locs.nrows() as u64, num_samples(n, 10000, 0.01));
            assert_eq!(locs.ncols(), 3);
            let mut prev: Option<Vec<i64>> = None;
            for row in locs.rows() {
                let idx: Vec<usize> = row.iter().map(|&v| v as usize).collect();
                assert!(c.contains(&(seg[IxDyn(&idx)] as i64)));
                let r = row.to_vec();
                if let Some(p) = prev {
                    assert!(p < r, "rows not strictly increasing in raster order");
                }
                prev = Some(r);
            }
        }
    }

    #[test]
    fn subsampling_is_exact_and_deterministic() {
        // 1 label covering half of a 64x64x64 volume: n = 131072 > 10000 → k = 10000.
        let shape = [64usize, 64, 64];
        let seg = seg_from(&shape, |i| (i % 2) as i16);
        let classes = vec![vec![1]];
        let a = sample_class_locations(seg.view(), &classes, 7, 10000, 0.01).unwrap();
        let b = sample_class_locations(seg.view(), &classes, 7, 10000, 0.01).unwrap();
        let c = sample_class_locations(seg.view(), &classes, 8, 10000, 0.01).unwrap();
        assert_eq!(a[0].nrows(), 10000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        for row in a[0].rows() {
            assert_eq!(row[2] % 2, 1);
        }
    }

    #[test]
    fn non_contiguous_and_sparse_lookup() {
        let seg = seg_from(&[20, 30], |i| (i % 5) as i16);
        let t = seg.t(); // transposed view
        let out = sample_class_locations(t.into_dyn(), &[vec![4]], 1, 10000, 0.01).unwrap();
        assert_eq!(out[0].nrows(), 120);
        for row in out[0].rows() {
            assert_eq!(seg[[row[1] as usize, row[0] as usize]], 4);
        }
        let big = ArrayD::from_shape_vec(
            IxDyn(&[4, 5]),
            (0..20).map(|i| if i == 3 { 2_000_000_000i32 } else { -5 }).collect(),
        )
        .unwrap();
        let out = sample_class_locations(
            big.view(),
            &[vec![2_000_000_000], vec![-5, -2_000_000_000]],
            1,
            10000,
            0.01,
        )
        .unwrap();
        assert_eq!(out[0].as_slice().unwrap(), &[0, 3]);
        assert_eq!(out[1].nrows(), 19);
    }

    #[test]
    fn fast_division_is_exact() {
        let mut r = Rng::new(5, 0);
        let divisors = [
            1u32,
            2,
            3,
            7,
            10,
            512,
            513,
            1000,
            65535,
            65536,
            99991,
            1 << 31,
            u32::MAX,
        ];
        for &d in &divisors {
            let f = FastDiv32::new(d);
            for n in [0u32, 1, d - 1, d, d.wrapping_add(1), u32::MAX, u32::MAX - 1] {
                assert_eq!(f.divmod(n), (n / d, n % d), "{n} / {d}");
            }
            for _ in 0..20_000 {
                let n = r.next_u64() as u32;
                assert_eq!(f.divmod(n), (n / d, n % d), "{n} / {d}");
            }
        }
        let shape = [3usize, 1, 200, 7]; // axis 1 has size 1, so row[0] * 1 + row[1] below
        let flat: Vec<u64> = (0..4200).step_by(13).collect();
        let coords = unravel(&flat, &shape);
        for (row, &fi) in coords.rows().into_iter().zip(&flat) {
            let back = ((row[0] + row[1]) * 200 + row[2]) * 7 + row[3];
            assert_eq!(back as u64, fi);
        }
    }

    #[test]
    fn bad_arguments() {
        let seg = seg_from(&[4, 4], |_| 0);
        assert!(matches!(
            sample_class_locations(seg.view(), &[vec![0]], 1, 10, 1.5),
            Err(KernelError::InvalidArgument {
                arg: "min_percent_coverage",
                ..
            })
        ));
    }
}
