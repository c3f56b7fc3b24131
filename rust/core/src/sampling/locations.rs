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

const NONE: u32 = u32::MAX;
const BLOCK: usize = 64;
/// Largest label span (max − min + 1) served by a dense lookup table.
const DENSE_SPAN_MAX: u64 = 1 << 20;

/// Label value → slot, or NONE.
enum Lookup {
    Dense { min: i64, lut: Vec<u32> },
    Sparse { labels: Vec<i64> },
}

impl Lookup {
    #[inline(always)]
    fn dense(min: i64, lut: &[u32], v: i64) -> u32 {
        let d = v.wrapping_sub(min) as u64;
        if d < lut.len() as u64 {
            lut[d as usize]
        } else {
            NONE
        }
    }

    #[inline(always)]
    fn sparse(labels: &[i64], v: i64) -> u32 {
        match labels.binary_search(&v) {
            Ok(i) => i as u32,
            Err(_) => NONE,
        }
    }
}

/// Calls `f(offset_in_chunk, slot)` for every voxel of `chunk` whose label is requested,
/// in raster order, skipping 64-voxel blocks with no value in `[lo, hi]`.
/// `f` returns false to stop early.
#[inline(always)]
fn for_each_labelled<T: Label>(
    chunk: &[T],
    lo: T,
    hi: T,
    slot_of: impl Fn(i64) -> u32,
    mut f: impl FnMut(usize, u32) -> bool,
) {
    for (b, block) in chunk.chunks(BLOCK).enumerate() {
        let any = block.iter().fold(false, |acc, &v| acc | ((v >= lo) & (v <= hi)));
        if !any {
            continue;
        }
        for (i, &v) in block.iter().enumerate() {
            let s = slot_of(v.to_i64());
            if s != NONE && !f(b * BLOCK + i, s) {
                return;
            }
        }
    }
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
        return Err(KernelError::shape("seg", "expected at least 1 dimension, got a 0-d array"));
    }
    if !(min_percent_coverage.is_finite() && (0.0..=1.0).contains(&min_percent_coverage)) {
        return Err(KernelError::invalid(
            "min_percent_coverage",
            format!("must be in [0, 1], got {min_percent_coverage}"),
        ));
    }
    let n_classes = classes.len();

    // Distinct requested labels that T can represent → slots 0..L (sorted by value).
    let mut labels: Vec<i64> = classes.iter().flatten().copied().filter(|&v| v >= T::MIN && v <= T::MAX).collect();
    labels.sort_unstable();
    labels.dedup();
    let n_slots = labels.len();
    let slot_of_label = |v: i64| labels.binary_search(&v).ok();
    let class_slots: Vec<Vec<u32>> = classes
        .iter()
        .map(|c| {
            let mut s: Vec<u32> = c.iter().filter_map(|&v| slot_of_label(v)).map(|i| i as u32).collect();
            s.sort_unstable();
            s.dedup();
            s
        })
        .collect();
    // slot → classes containing it
    let mut slot_classes: Vec<Vec<u32>> = vec![Vec::new(); n_slots];
    for (c, slots) in class_slots.iter().enumerate() {
        for &s in slots {
            slot_classes[s as usize].push(c as u32);
        }
    }

    let shape: Vec<usize> = seg.shape().to_vec();
    let empty = |k: usize| Array2::<i64>::zeros((k, ndim));
    if n_slots == 0 || seg.is_empty() {
        return Ok((0..n_classes).map(|_| empty(0)).collect());
    }

    let std = seg.as_standard_layout();
    let data: &[T] = std.as_slice().expect("standard layout is contiguous");
    let n_vox = data.len();

    let lo_i = labels[0];
    let hi_i = labels[n_slots - 1];
    let (lo, hi) = (T::from_i64(lo_i), T::from_i64(hi_i));
    let span = (hi_i - lo_i) as u64 + 1;
    let lookup = if span <= DENSE_SPAN_MAX {
        let mut lut = vec![NONE; span as usize];
        for (s, &v) in labels.iter().enumerate() {
            lut[(v - lo_i) as usize] = s as u32;
        }
        Lookup::Dense { min: lo_i, lut }
    } else {
        Lookup::Sparse { labels: labels.clone() }
    };

    // Chunking: big enough that the per-chunk count table stays small (≤ ~4 M entries),
    // small enough that pass 2 can skip the chunks without a selected voxel.
    let chunk = {
        let by_table = (n_vox as u128 * n_slots as u128).div_ceil(1 << 22) as usize;
        by_table.max(8192).div_ceil(BLOCK) * BLOCK
    };
    let n_chunks = n_vox.div_ceil(chunk);

    // Pass 1: per-chunk, per-slot counts.
    let mut table = vec![0u32; n_chunks * n_slots];
    let count_chunk = |vox: &[T], counts: &mut [u32]| match &lookup {
        Lookup::Dense { min, lut } => for_each_labelled(vox, lo, hi, |v| Lookup::dense(*min, lut, v), |_, s| {
            counts[s as usize] += 1;
            true
        }),
        Lookup::Sparse { labels } => for_each_labelled(vox, lo, hi, |v| Lookup::sparse(labels, v), |_, s| {
            counts[s as usize] += 1;
            true
        }),
    };
    data.par_chunks(chunk)
        .zip(table.par_chunks_mut(n_slots))
        .for_each(|(vox, counts)| count_chunk(vox, counts));

    // Per class: exclusive prefix of its voxel count over chunks (length n_chunks + 1).
    let prefixes: Vec<Vec<u64>> = class_slots
        .par_iter()
        .map(|slots| {
            let mut p = Vec::with_capacity(n_chunks + 1);
            let mut acc = 0u64;
            p.push(0);
            for ch in 0..n_chunks {
                let row = &table[ch * n_slots..(ch + 1) * n_slots];
                acc += slots.iter().map(|&s| row[s as usize] as u64).sum::<u64>();
                p.push(acc);
            }
            p
        })
        .collect();

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
            // The last prefix is n > every ordinal, so b[n_chunks] == sel.len().
            b
        })
        .collect();

    // Pass 2: selected ordinals → flat indices, writing into disjoint slices per chunk.
    let mut flat: Vec<Vec<u64>> = selections.iter().map(|s| vec![0u64; s.len()]).collect();
    {
        let mut tasks: Vec<Vec<&mut [u64]>> = (0..n_chunks).map(|_| Vec::with_capacity(n_classes)).collect();
        for (c, out) in flat.iter_mut().enumerate() {
            let mut rest: &mut [u64] = out.as_mut_slice();
            for (ch, task) in tasks.iter_mut().enumerate() {
                let len = bounds[c][ch + 1] - bounds[c][ch];
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
                task.push(head);
                rest = tail;
            }
        }
        tasks.into_par_iter().enumerate().for_each(|(ch, mut outs)| {
            let mut remaining: usize = outs.iter().map(|o| o.len()).sum();
            if remaining == 0 {
                return;
            }
            let base = ch * chunk;
            let vox = &data[base..(base + chunk).min(n_vox)];
            let mut ord: Vec<u64> = (0..n_classes).map(|c| prefixes[c][ch]).collect();
            let mut next = vec![0usize; n_classes];
            let wanted: Vec<&[u64]> = (0..n_classes).map(|c| &selections[c][bounds[c][ch]..bounds[c][ch + 1]]).collect();
            let mut visit = |i: usize, s: u32| {
                for &c in &slot_classes[s as usize] {
                    let c = c as usize;
                    let j = next[c];
                    if j < wanted[c].len() && wanted[c][j] == ord[c] {
                        outs[c][j] = (base + i) as u64;
                        next[c] = j + 1;
                        remaining -= 1;
                    }
                    ord[c] += 1;
                }
                remaining > 0
            };
            match &lookup {
                Lookup::Dense { min, lut } => for_each_labelled(vox, lo, hi, |v| Lookup::dense(*min, lut, v), &mut visit),
                Lookup::Sparse { labels } => for_each_labelled(vox, lo, hi, |v| Lookup::sparse(labels, v), &mut visit),
            }
            debug_assert_eq!(remaining, 0);
        });
    }
    drop(std);

    // Flat indices → coordinates.
    let unravel = |f: &[u64]| -> Array2<i64> {
        let mut out = vec![0i64; f.len() * ndim];
        out.par_chunks_mut(ndim * 4096).zip(f.par_chunks(4096)).for_each(|(rows, idx)| {
            for (row, &fi) in rows.chunks_exact_mut(ndim).zip(idx) {
                let mut rem = fi;
                for d in (0..ndim).rev() {
                    let sz = shape[d] as u64;
                    row[d] = (rem % sz) as i64;
                    rem /= sz;
                }
            }
        });
        Array2::from_shape_vec((f.len(), ndim), out).expect("shape matches")
    };
    Ok(flat.iter().map(|f| unravel(f)).collect())
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
        let classes = vec![vec![1], vec![2, 3], vec![-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], vec![99], vec![]];
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
        let big = ArrayD::from_shape_vec(IxDyn(&[4, 5]), (0..20).map(|i| if i == 3 { 2_000_000_000i32 } else { -5 }).collect()).unwrap();
        let out = sample_class_locations(big.view(), &[vec![2_000_000_000], vec![-5, -2_000_000_000]], 1, 10000, 0.01).unwrap();
        assert_eq!(out[0].as_slice().unwrap(), &[0, 3]);
        assert_eq!(out[1].nrows(), 19);
    }

    #[test]
    fn bad_arguments() {
        let seg = seg_from(&[4, 4], |_| 0);
        assert!(matches!(
            sample_class_locations(seg.view(), &[vec![0]], 1, 10, 1.5),
            Err(KernelError::InvalidArgument { arg: "min_percent_coverage", .. })
        ));
    }
}
