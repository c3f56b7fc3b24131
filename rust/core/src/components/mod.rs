//! Connected components of 2D/3D masks: labelling in scipy's numbering, and the two
//! postprocessing filters nnU-Net uses (keep the largest component(s), drop small ones).
//!
//! Everything runs on the run-based union-find of [`runs`]: the voxels are read once to
//! extract runs, components are found on runs (not voxels), and the output is written in
//! one parallel pass.

pub(crate) mod runs;

use ndarray::{ArrayD, ArrayView3, ArrayViewD, ArrayViewMut3, ArrayViewMutD, Axis, IxDyn};
use rayon::prelude::*;

pub use runs::Connectivity;
use runs::{copy_into, extract, label, Grid, PredicateRows, Rows, RunTable};

use crate::{KernelError, KernelResult};

/// Element types accepted as a mask: `bool` or any integer (nonzero = foreground).
pub trait MaskValue: Copy + Send + Sync + 'static {
    fn is_on(self) -> bool;
}

impl MaskValue for bool {
    #[inline(always)]
    fn is_on(self) -> bool {
        self
    }
}

/// Integer element types of label maps.
pub trait LabelValue: Copy + Send + Sync + PartialOrd + 'static {
    const NAME: &'static str;
    fn to_i64(self) -> i64;
    fn from_i64(v: i64) -> Option<Self>;
}

macro_rules! int_values {
    ($($t:ty),*) => {$(
        impl MaskValue for $t {
            #[inline(always)]
            fn is_on(self) -> bool {
                self != 0
            }
        }
        impl LabelValue for $t {
            const NAME: &'static str = stringify!($t);
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self as i64
            }
            #[inline(always)]
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
        }
    )*};
}
int_values!(i8, i16, i32, i64, u8, u16, u32, u64);

/// A label value that must fit the array's dtype.
pub(crate) fn label_in_dtype<T: LabelValue>(arg: &'static str, v: i64) -> KernelResult<T> {
    T::from_i64(v).ok_or_else(|| KernelError::invalid(arg, format!("{v} does not fit the label dtype {}", T::NAME)))
}

/// The row grid of a 2D or 3D array: 2D `(X, Y)` becomes `(X, 1, Y)`; a 3D array with a
/// single plane `(1, Y, Z)` becomes `(Y, 1, Z)` so that its rows can be split across threads
/// (neighbourhoods are unchanged by both mappings).
fn grid_shape(shape: &[usize], arg: &'static str) -> KernelResult<[usize; 3]> {
    match *shape {
        [a, b] => Ok([a, 1, b]),
        [1, b, c] => Ok([b, 1, c]),
        [a, b, c] => Ok([a, b, c]),
        _ => Err(KernelError::shape(
            arg,
            format!("expected 2 or 3 dimensions, got {} (shape {shape:?})", shape.len()),
        )),
    }
}

fn grid_view<'a, T>(v: ArrayViewD<'a, T>, arg: &'static str) -> KernelResult<ArrayView3<'a, T>> {
    let g = grid_shape(v.shape(), arg)?;
    if g[2] >= u32::MAX as usize {
        return Err(KernelError::shape(arg, "the last axis is too long (2^32 or more)"));
    }
    let v3 = match v.ndim() {
        2 => v.insert_axis(Axis(1)),
        _ if v.shape()[0] == 1 => v.index_axis_move(Axis(0), 0).insert_axis(Axis(1)),
        _ => v,
    };
    let v3 = v3
        .into_dimensionality()
        .map_err(|e| KernelError::shape(arg, e.to_string()))?;
    debug_assert_eq!(v3.shape(), &g[..]);
    Ok(v3)
}

fn grid_view_mut<'a, T>(v: ArrayViewMutD<'a, T>, arg: &'static str) -> KernelResult<ArrayViewMut3<'a, T>> {
    grid_shape(v.shape(), arg)?;
    let v3 = match v.ndim() {
        2 => v.insert_axis(Axis(1)),
        _ if v.shape()[0] == 1 => v.index_axis_move(Axis(0), 0).insert_axis(Axis(1)),
        _ => v,
    };
    v3.into_dimensionality()
        .map_err(|e| KernelError::shape(arg, e.to_string()))
}

fn check_out_shape(in_shape: &[usize], out_shape: &[usize]) -> KernelResult<()> {
    if in_shape != out_shape {
        return Err(KernelError::shape(
            "out",
            format!("shape {out_shape:?} differs from the input shape {in_shape:?}"),
        ));
    }
    Ok(())
}

fn table_for<T, P>(v: ArrayView3<'_, T>, pred: P) -> KernelResult<RunTable>
where
    T: Copy + Send + Sync,
    P: Fn(T) -> bool + Sync,
{
    let sh = v.shape();
    let grid = Grid {
        nx: sh[0],
        ny: sh[1],
        nz: sh[2],
    };
    let src = PredicateRows {
        rows: Rows::new(v),
        pred,
    };
    extract(grid, &src)
}

/// Labels the connected components of `mask` (nonzero = foreground) into `out`, numbering
/// them `1..=n` in raster (C) order of their first voxel, exactly as `scipy.ndimage.label`
/// does. Returns `n`.
pub fn label_components_into<T: MaskValue>(
    mask: ArrayViewD<'_, T>,
    connectivity: Connectivity,
    out: ArrayViewMutD<'_, u32>,
) -> KernelResult<u32> {
    check_out_shape(mask.shape(), out.shape())?;
    let m = grid_view(mask, "mask")?;
    let mut o = grid_view_mut(out, "out")?;
    if m.is_empty() {
        return Ok(0);
    }
    let table = table_for(m, T::is_on)?;
    let (labels, n) = label(&table, connectivity);
    o.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(x, mut plane)| {
            for (y, mut row) in plane.outer_iter_mut().enumerate() {
                row.fill(0);
                let (rs, base) = table.row(x, y);
                for (k, r) in rs.iter().enumerate() {
                    let l = labels[base + k];
                    row.slice_mut(ndarray::s![r.s as usize..r.e as usize]).fill(l);
                }
            }
        });
    Ok(n)
}

/// [`label_components_into`] into a new array.
pub fn label_components<T: MaskValue>(
    mask: ArrayViewD<'_, T>,
    connectivity: Connectivity,
) -> KernelResult<(ArrayD<u32>, u32)> {
    let mut out = ArrayD::<u32>::zeros(IxDyn(mask.shape()));
    let n = label_components_into(mask, connectivity, out.view_mut())?;
    Ok((out, n))
}

/// Which components a filter keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Every component of maximal size (all of them on a tie).
    Largest,
    /// Components of at least this many voxels.
    AtLeast(u64),
}

/// The set of label values forming the mask, as a predicate that vectorizes when it can.
enum LabelSet<T> {
    Empty,
    Range(T, T),
    Table { lo: i64, table: Vec<bool> },
    Sorted(Vec<i64>),
}

impl<T: LabelValue> LabelSet<T> {
    /// Values outside `T`'s range match nothing (as numpy's `==` does).
    fn new(labels: &[i64]) -> Self {
        let mut v: Vec<i64> = labels.iter().copied().filter(|&l| T::from_i64(l).is_some()).collect();
        v.sort_unstable();
        v.dedup();
        let (lo, hi) = match (v.first(), v.last()) {
            (Some(&a), Some(&b)) => (a, b),
            _ => return LabelSet::Empty,
        };
        let span = (hi - lo) as u64 + 1;
        if span == v.len() as u64 {
            LabelSet::Range(T::from_i64(lo).unwrap(), T::from_i64(hi).unwrap())
        } else if span <= 1 << 22 {
            let mut table = vec![false; span as usize];
            for &l in &v {
                table[(l - lo) as usize] = true;
            }
            LabelSet::Table { lo, table }
        } else {
            LabelSet::Sorted(v)
        }
    }
}

/// Writes `seg` into `out` with the voxels of the removed components set to `replace`.
fn write_filtered<T: LabelValue>(
    seg: ArrayView3<'_, T>,
    table: Option<(&RunTable, &[u32], &[bool])>,
    replace: T,
    mut out: ArrayViewMut3<'_, T>,
) {
    let rows = Rows::new(seg);
    let nz = rows.shape()[2];
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(x, mut plane)| {
            let mut buf = Vec::new();
            for (y, mut orow) in plane.outer_iter_mut().enumerate() {
                copy_into(&mut orow, rows.row(x, y, 0, nz, &mut buf));
                if let Some((table, labels, remove)) = table {
                    let (rs, base) = table.row(x, y);
                    for (k, r) in rs.iter().enumerate() {
                        if remove[labels[base + k] as usize] {
                            orow.slice_mut(ndarray::s![r.s as usize..r.e as usize]).fill(replace);
                        }
                    }
                }
            }
        });
}

fn filter_with<T, P>(
    seg: ArrayView3<'_, T>,
    pred: P,
    keep: Keep,
    replace: T,
    out: ArrayViewMut3<'_, T>,
) -> KernelResult<()>
where
    T: LabelValue,
    P: Fn(T) -> bool + Sync,
{
    let table = table_for(seg, pred)?;
    let (labels, n) = label(&table, Connectivity::Full);
    let sizes = runs::component_sizes(&table, &labels, n);
    let remove: Vec<bool> = match keep {
        Keep::Largest => {
            let max = sizes.iter().skip(1).copied().max().unwrap_or(0);
            sizes.iter().enumerate().map(|(l, &s)| l > 0 && s < max).collect()
        }
        Keep::AtLeast(min) => sizes.iter().enumerate().map(|(l, &s)| l > 0 && s < min).collect(),
    };
    if remove.iter().any(|&r| r) {
        write_filtered(seg, Some((&table, &labels, &remove)), replace, out);
    } else {
        write_filtered(seg, None, replace, out);
    }
    Ok(())
}

/// Copies `seg` into `out`, setting the voxels of removed components of the mask
/// `seg ∈ labels` (full connectivity) to `replace_with`. Labels that do not fit `T` match
/// nothing.
pub fn filter_components_into<T: LabelValue>(
    seg: ArrayViewD<'_, T>,
    labels: &[i64],
    keep: Keep,
    replace_with: i64,
    out: ArrayViewMutD<'_, T>,
) -> KernelResult<()> {
    check_out_shape(seg.shape(), out.shape())?;
    let replace: T = label_in_dtype(
        match keep {
            Keep::Largest => "background_label",
            Keep::AtLeast(_) => "replace_with",
        },
        replace_with,
    )?;
    let s = grid_view(seg, "seg")?;
    let o = grid_view_mut(out, "out")?;
    if s.is_empty() {
        return Ok(());
    }
    match LabelSet::<T>::new(labels) {
        LabelSet::Empty => {
            write_filtered(s, None, replace, o);
            Ok(())
        }
        LabelSet::Range(lo, hi) => {
            if lo == hi {
                filter_with(s, move |v: T| v == lo, keep, replace, o)
            } else {
                filter_with(s, move |v: T| v >= lo && v <= hi, keep, replace, o)
            }
        }
        LabelSet::Table { lo, table } => {
            let len = table.len() as u64;
            let t = &table;
            filter_with(
                s,
                move |v: T| {
                    let k = v.to_i64().wrapping_sub(lo) as u64;
                    k < len && t[k as usize]
                },
                keep,
                replace,
                o,
            )
        }
        LabelSet::Sorted(v) => filter_with(s, |x: T| v.binary_search(&x.to_i64()).is_ok(), keep, replace, o),
    }
}

/// nnU-Net's `remove_all_but_largest_component_from_segmentation`: the mask is the union of
/// `labels`; all of its largest components (ties included) are kept, the voxels of the others
/// become `background_label`. Returns a new array.
pub fn remove_all_but_largest_component<T: LabelValue>(
    seg: ArrayViewD<'_, T>,
    labels: &[i64],
    background_label: i64,
) -> KernelResult<ArrayD<T>> {
    let zero = label_in_dtype::<T>("background_label", background_label)?;
    let mut out = ArrayD::from_elem(IxDyn(seg.shape()), zero);
    filter_components_into(seg, labels, Keep::Largest, background_label, out.view_mut())?;
    Ok(out)
}

/// Components of the mask `seg ∈ labels` with fewer than `min_size` voxels become
/// `replace_with`. Returns a new array.
pub fn remove_small_components<T: LabelValue>(
    seg: ArrayViewD<'_, T>,
    labels: &[i64],
    min_size: u64,
    replace_with: i64,
) -> KernelResult<ArrayD<T>> {
    let zero = label_in_dtype::<T>("replace_with", replace_with)?;
    let mut out = ArrayD::from_elem(IxDyn(seg.shape()), zero);
    filter_components_into(seg, labels, Keep::AtLeast(min_size), replace_with, out.view_mut())?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
