//! Run-based connected-component labelling, the engine behind `components` and `crop`.
//!
//! A volume is seen as a grid of rows `(x, y)`, each row running along the last (contiguous)
//! axis `z`. Foreground voxels of a row form maximal half-open runs `[s, e)`. Two runs are
//! connected when their rows are neighbours under the chosen connectivity and their
//! z-intervals overlap (strictly, or with a one-voxel tolerance when diagonal steps along z
//! are allowed). Components are then the classes of a union-find over runs.
//!
//! The runs of a neighbour row touching a given run form a contiguous index range. Rows with
//! many runs carry a rank index (bit sets of run starts and run ends with per-word prefix
//! counts) that yields that range in O(1); short rows are simply scanned. Each run then
//! unites with its candidates while tracking its current root, so most candidates cost one
//! `find` and no branch mispredictions on the hot path.
//!
//! Parallel scheme: the planes `x` are split into slabs; every slab extracts its runs and
//! unites them independently (local indices), then the slabs are stitched sequentially at
//! their boundary planes. Union-find always links the larger root below the smaller one, so
//! the root of a component is its first run in raster order, which gives scipy's label
//! numbering (raster order of the first voxel) for free.

use std::marker::PhantomData;

use ndarray::{ArrayView3, ArrayViewMut1};
use rayon::prelude::*;

use crate::{KernelError, KernelResult};

/// A maximal run `[s, e)` of foreground voxels along z.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub s: u32,
    pub e: u32,
}

/// Shape of the row grid: `nx` planes of `ny` rows of `nz` voxels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grid {
    pub nx: usize,
    pub ny: usize,
    pub nz: usize,
}

impl Grid {
    pub fn voxels(&self) -> usize {
        self.nx * self.ny * self.nz
    }
}

/// Which neighbours touch, expressed on the 3D grid. 2D images are mapped to `(x, 1, y)`,
/// where `Face` is 4-connectivity and `Full` 8-connectivity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connectivity {
    /// Shared face: 6 neighbours in 3D, 4 in 2D.
    Face,
    /// Shared face or edge: 18 neighbours in 3D (8 in 2D, same as `Full`).
    Edge,
    /// Shared face, edge or corner: 26 neighbours in 3D, 8 in 2D.
    Full,
}

impl Connectivity {
    /// Parses the neighbour count of scipy/cc3d conventions for an `ndim`-dimensional image.
    pub fn from_neighbours(ndim: usize, n: usize) -> KernelResult<Self> {
        match (ndim, n) {
            (2, 4) | (3, 6) => Ok(Connectivity::Face),
            (3, 18) => Ok(Connectivity::Edge),
            (2, 8) | (3, 26) => Ok(Connectivity::Full),
            (2, _) => Err(KernelError::invalid(
                "connectivity",
                format!("must be 4 or 8 for a 2D image, got {n}"),
            )),
            (3, _) => Err(KernelError::invalid(
                "connectivity",
                format!("must be 6, 18 or 26 for a 3D image, got {n}"),
            )),
            _ => Err(KernelError::invalid(
                "connectivity",
                format!("no connectivity for {ndim}D images"),
            )),
        }
    }

    /// Earlier rows `(dx, dy)` a row connects to, and whether a one-voxel z offset is allowed.
    fn previous_rows(self) -> &'static [(isize, isize, bool)] {
        match self {
            Connectivity::Face => &[(0, -1, false), (-1, 0, false)],
            Connectivity::Edge => &[(0, -1, true), (-1, -1, false), (-1, 0, true), (-1, 1, false)],
            Connectivity::Full => &[(0, -1, true), (-1, -1, true), (-1, 0, true), (-1, 1, true)],
        }
    }
}

/// Source of the runs of every row.
pub(crate) trait RowRuns: Sync {
    type Scratch: Send;
    fn scratch(&self) -> Self::Scratch;
    /// Appends the runs of row `(x, y)`, sorted and maximal, to `out`.
    fn push_runs(&self, x: usize, y: usize, scratch: &mut Self::Scratch, out: &mut Vec<Run>);
}

/// The runs of planes `[p0, p1)`.
pub(crate) struct Slab {
    pub p0: usize,
    pub p1: usize,
    /// Global index of this slab's first run.
    pub base: usize,
    pub runs: Vec<Run>,
    /// `row_ptr[r]..row_ptr[r + 1]` are the runs of local row `r = (x - p0) * ny + y`.
    pub row_ptr: Vec<u32>,
    /// Rank index of the rows with many runs (`nw` words each; `index_of_row[r]` is the
    /// slot of row `r`, or `NO_INDEX`): bit `z` of `starts` is set where a run starts, bit `z`
    /// of `lasts` where a run has its last voxel; `*_pref[w]` counts the bits of the row's
    /// words before `w`. Together they find the runs touching an interval in O(1). Rows with
    /// few runs are scanned instead.
    index_of_row: Vec<u32>,
    starts: Vec<u64>,
    lasts: Vec<u64>,
    starts_pref: Vec<u32>,
    lasts_pref: Vec<u32>,
}

/// All runs of a grid, in raster order, split into slabs.
pub(crate) struct RunTable {
    pub grid: Grid,
    pub slabs: Vec<Slab>,
    slab_of_plane: Vec<u32>,
    pub n_runs: usize,
    /// Words per row in the rank index.
    nw: usize,
}

const NO_INDEX: u32 = u32::MAX;

/// Rows with more runs than this get a rank index.
const INDEX_MIN_RUNS: usize = 8;

/// One row's runs, with their rank index when the row has many.
#[derive(Clone, Copy)]
struct RowIndex<'a> {
    /// Index (in the parent array being worked on) of the row's first run.
    first: u32,
    runs: &'a [Run],
    index: Option<RankIndex<'a>>,
}

#[derive(Clone, Copy)]
struct RankIndex<'a> {
    starts: &'a [u64],
    lasts: &'a [u64],
    starts_pref: &'a [u32],
    lasts_pref: &'a [u32],
}

/// Number of set bits of `bits` at positions `<= t`.
#[inline(always)]
fn rank(bits: &[u64], pref: &[u32], t: usize) -> u32 {
    let w = t >> 6;
    pref[w] + (bits[w] & (u64::MAX >> (63 - (t & 63)))).count_ones()
}

impl RowIndex<'_> {
    const EMPTY: RowIndex<'static> = RowIndex {
        first: 0,
        runs: &[],
        index: None,
    };

    /// Local indices `lo..hi` of the runs touching `[s, e)`; with `diagonal_z`, runs that
    /// only touch it at a corner (one voxel before or after) count too.
    #[inline(always)]
    fn touching(&self, s: u32, e: u32, diagonal_z: bool, nz: usize) -> (u32, u32) {
        let d = diagonal_z as u32;
        match &self.index {
            Some(ix) => {
                let (s, e, d) = (s as usize, e as usize, d as usize);
                // Runs whose last voxel is before s - d lie entirely before the interval.
                let lo = if s > d {
                    rank(ix.lasts, ix.lasts_pref, s - d - 1)
                } else {
                    0
                };
                // Runs starting at or before e - 1 + d reach it.
                let hi = rank(ix.starts, ix.starts_pref, (e - 1 + d).min(nz - 1));
                (lo, hi)
            }
            None => {
                let (mut lo, mut hi) = (0u32, 0u32);
                for r in self.runs {
                    lo += (r.e + d <= s) as u32;
                    hi += (r.s < e + d) as u32;
                }
                (lo, hi)
            }
        }
    }
}

impl RunTable {
    /// The runs of row `(x, y)` and the global index of the first of them.
    #[inline]
    pub fn row(&self, x: usize, y: usize) -> (&[Run], usize) {
        let slab = &self.slabs[self.slab_of_plane[x] as usize];
        let r = (x - slab.p0) * self.grid.ny + y;
        let (a, b) = (slab.row_ptr[r] as usize, slab.row_ptr[r + 1] as usize);
        (&slab.runs[a..b], slab.base + a)
    }
}

impl Slab {
    /// Runs and rank index of local row `r`; `first` is offset by `base`.
    #[inline(always)]
    fn row_index(&self, r: usize, nw: usize, base: usize) -> RowIndex<'_> {
        let (a, b) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
        let slot = self.index_of_row[r];
        let index = (slot != NO_INDEX).then(|| {
            let w = slot as usize * nw..(slot as usize + 1) * nw;
            RankIndex {
                starts: &self.starts[w.clone()],
                lasts: &self.lasts[w.clone()],
                starts_pref: &self.starts_pref[w.clone()],
                lasts_pref: &self.lasts_pref[w],
            }
        });
        RowIndex {
            first: (base + a) as u32,
            runs: &self.runs[a..b],
            index,
        }
    }
}

/// Splits `nx` planes into slabs: one for small grids, else a few per thread.
fn slab_ranges(grid: Grid) -> Vec<(usize, usize)> {
    let nx = grid.nx.max(1);
    // Unit tests split small grids too, so that the stitching is exercised everywhere.
    const MIN_SPLIT_VOXELS: usize = if cfg!(test) { 1 << 8 } else { 1 << 18 };
    let n = if grid.voxels() < MIN_SPLIT_VOXELS {
        1
    } else {
        (rayon::current_num_threads() * 4).clamp(1, nx)
    };
    (0..n)
        .map(|k| (k * nx / n, (k + 1) * nx / n))
        .filter(|(a, b)| b > a)
        .collect()
}

/// Runs and rank index of planes `[p0, p1)`.
#[inline(never)]
fn extract_slab<S: RowRuns>(grid: Grid, nw: usize, src: &S, p0: usize, p1: usize) -> Slab {
    let mut scratch = src.scratch();
    let rows = (p1 - p0) * grid.ny;
    let mut runs = Vec::new();
    let mut row_ptr = Vec::with_capacity(rows + 1);
    let mut index_of_row = Vec::with_capacity(rows);
    let (mut starts, mut lasts, mut starts_pref, mut lasts_pref) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    row_ptr.push(0u32);
    for x in p0..p1 {
        for y in 0..grid.ny {
            let first = runs.len();
            src.push_runs(x, y, &mut scratch, &mut runs);
            row_ptr.push(u32::try_from(runs.len()).unwrap_or(u32::MAX));
            if runs.len() - first <= INDEX_MIN_RUNS {
                index_of_row.push(NO_INDEX);
                continue;
            }
            index_of_row.push((starts.len() / nw) as u32);
            let w0 = starts.len();
            starts.resize(w0 + nw, 0u64);
            lasts.resize(w0 + nw, 0u64);
            let (sb, lb) = (&mut starts[w0..], &mut lasts[w0..]);
            for run in &runs[first..] {
                let (s, l) = (run.s as usize, run.e as usize - 1);
                sb[s >> 6] |= 1 << (s & 63);
                lb[l >> 6] |= 1 << (l & 63);
            }
            let (mut cs, mut cl) = (0u32, 0u32);
            for k in 0..nw {
                starts_pref.push(cs);
                lasts_pref.push(cl);
                cs += sb[k].count_ones();
                cl += lb[k].count_ones();
            }
        }
    }
    Slab {
        p0,
        p1,
        base: 0,
        runs,
        row_ptr,
        index_of_row,
        starts,
        lasts,
        starts_pref,
        lasts_pref,
    }
}

/// Extracts the runs of every row, slabs in parallel.
pub(crate) fn extract<S: RowRuns>(grid: Grid, src: &S) -> KernelResult<RunTable> {
    let ranges = slab_ranges(grid);
    let nw = grid.nz.div_ceil(64).max(1);
    let mut slabs: Vec<Slab> = ranges
        .into_par_iter()
        .map(|(p0, p1)| extract_slab(grid, nw, src, p0, p1))
        .collect();
    let mut base = 0usize;
    let mut slab_of_plane = vec![0u32; grid.nx];
    for (k, slab) in slabs.iter_mut().enumerate() {
        if slab.runs.len() >= u32::MAX as usize {
            return Err(KernelError::invalid(
                "mask",
                "too many foreground runs (more than 2^32) for one volume",
            ));
        }
        slab.base = base;
        base += slab.runs.len();
        slab_of_plane[slab.p0..slab.p1].fill(k as u32);
    }
    if base >= u32::MAX as usize {
        return Err(KernelError::invalid(
            "mask",
            "too many foreground runs (more than 2^32) for one volume",
        ));
    }
    Ok(RunTable {
        grid,
        slabs,
        slab_of_plane,
        n_runs: base,
        nw,
    })
}

#[inline]
fn find(p: &mut [u32], mut x: u32) -> u32 {
    loop {
        let px = p[x as usize];
        if px == x {
            return x;
        }
        let gx = p[px as usize];
        p[x as usize] = gx;
        x = gx;
    }
}

/// Makes `rb` and `root` one class; `root` stays the class's root (the smaller index wins).
#[inline(always)]
fn link(p: &mut [u32], root: &mut u32, rb: u32) {
    if rb != *root {
        if rb < *root {
            p[*root as usize] = rb;
            *root = rb;
        } else {
            p[rb as usize] = *root;
        }
    }
}

/// Unites every run of row `a` with the runs it touches in the earlier rows `nbrs`
/// (each with its z tolerance; missing rows are empty). The smaller root always becomes the
/// parent, so a component's root is its first run.
#[inline(always)]
fn unite_row<const K: usize>(a: &RowIndex<'_>, nbrs: &[(RowIndex<'_>, bool); K], nz: usize, p: &mut [u32]) {
    for (k, ra) in a.runs.iter().enumerate() {
        let mut root = find(p, a.first + k as u32);
        for (b, diag) in nbrs {
            let (lo, hi) = b.touching(ra.s, ra.e, *diag, nz);
            // The first candidate without a branch on random data: `root` itself (a no-op
            // union) when there is none.
            let has = ((lo < hi) as u32).wrapping_neg();
            let c0 = root ^ ((root ^ b.first.wrapping_add(lo)) & has);
            let rb = find(p, c0);
            link(p, &mut root, rb);
            for j in lo + 1..hi {
                let rb = find(p, b.first + j);
                link(p, &mut root, rb);
            }
        }
    }
}

/// The `K` earlier neighbour rows of row `(x, y)` through `index`, `empty` where a row does
/// not exist, lies before plane `min_x`, or (with `previous_plane_only`) is in plane `x`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn neighbours<'t, const K: usize>(
    grid: Grid,
    conn: Connectivity,
    x: usize,
    y: usize,
    min_x: usize,
    previous_plane_only: bool,
    index: &impl Fn(usize, usize) -> RowIndex<'t>,
) -> [(RowIndex<'t>, bool); K] {
    let dirs = conn.previous_rows();
    debug_assert_eq!(dirs.len(), K);
    std::array::from_fn(|k| {
        let (dx, dy, diag) = dirs[k];
        let (nxi, nyi) = (x as isize + dx, y as isize + dy);
        if (previous_plane_only && dx == 0) || nxi < min_x as isize || nyi < 0 || nyi >= grid.ny as isize {
            (RowIndex::EMPTY, diag)
        } else {
            (index(nxi as usize, nyi as usize), diag)
        }
    })
}

/// Slab-local union-find over the runs of `slab` (`p` indexed locally), flattened, then
/// shifted to global indices.
#[inline(never)]
fn unite_slab(grid: Grid, conn: Connectivity, nw: usize, slab: &Slab, p: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU supports popcnt.
        return unsafe { unite_slab_popcnt(grid, conn, nw, slab, p) };
    }
    unite_slab_impl(grid, conn, nw, slab, p)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn unite_slab_popcnt(grid: Grid, conn: Connectivity, nw: usize, slab: &Slab, p: &mut [u32]) {
    unite_slab_impl(grid, conn, nw, slab, p)
}

#[inline(always)]
fn unite_slab_impl(grid: Grid, conn: Connectivity, nw: usize, slab: &Slab, p: &mut [u32]) {
    for (i, v) in p.iter_mut().enumerate() {
        *v = i as u32;
    }
    match conn {
        Connectivity::Face => unite_slab_rows::<2>(grid, conn, nw, slab, p),
        _ => unite_slab_rows::<4>(grid, conn, nw, slab, p),
    }
    // Flatten (parents always precede their children) and go global.
    for i in 0..p.len() {
        let r = p[p[i] as usize];
        p[i] = r;
    }
    let base = slab.base as u32;
    if base != 0 {
        for v in p.iter_mut() {
            *v += base;
        }
    }
}

#[inline(always)]
fn unite_slab_rows<const K: usize>(grid: Grid, conn: Connectivity, nw: usize, slab: &Slab, p: &mut [u32]) {
    let index = |x: usize, y: usize| slab.row_index((x - slab.p0) * grid.ny + y, nw, 0);
    for x in slab.p0..slab.p1 {
        for y in 0..grid.ny {
            let a = index(x, y);
            if a.runs.is_empty() {
                continue;
            }
            let nbrs = neighbours::<K>(grid, conn, x, y, slab.p0, false, &index);
            unite_row(&a, &nbrs, grid.nz, p);
        }
    }
}

/// Unites the first plane of every slab but the first with the last plane of the slab before.
fn stitch_slabs<const K: usize>(table: &RunTable, conn: Connectivity, parent: &mut [u32]) {
    let (grid, nw) = (table.grid, table.nw);
    let index = |x: usize, y: usize| {
        let slab = &table.slabs[table.slab_of_plane[x] as usize];
        slab.row_index((x - slab.p0) * grid.ny + y, nw, slab.base)
    };
    for slab in table.slabs.iter().skip(1) {
        for y in 0..grid.ny {
            let a = index(slab.p0, y);
            if a.runs.is_empty() {
                continue;
            }
            // Only the rows of the previous plane: the slab's own rows are already united.
            let nbrs = neighbours::<K>(grid, conn, slab.p0, y, slab.p0 - 1, true, &index);
            unite_row(&a, &nbrs, grid.nz, parent);
        }
    }
}

/// Component of every run: returns `(label per run, number of components)`, labels `1..=n`
/// numbered in raster order of each component's first voxel.
#[inline(never)]
pub(crate) fn label(table: &RunTable, conn: Connectivity) -> (Vec<u32>, u32) {
    let grid = table.grid;
    let nw = table.nw;
    if table.n_runs == 0 {
        return (Vec::new(), 0);
    }
    // 1. Slab-local union-find, in parallel, on local indices; then shifted to global ones.
    let mut parent = vec![0u32; table.n_runs];
    {
        let mut rest: &mut [u32] = &mut parent;
        let mut parts = Vec::with_capacity(table.slabs.len());
        for slab in &table.slabs {
            let (head, tail) = rest.split_at_mut(slab.runs.len());
            parts.push((slab, head));
            rest = tail;
        }
        parts
            .into_par_iter()
            .for_each(|(slab, p)| unite_slab(grid, conn, nw, slab, p));
    }
    // 2. Stitch each slab's first plane to the previous slab's last plane.
    match conn {
        Connectivity::Face => stitch_slabs::<2>(table, conn, &mut parent),
        _ => stitch_slabs::<4>(table, conn, &mut parent),
    }
    // 3. Flatten globally and number the roots in order.
    let mut n = 0u32;
    for i in 0..parent.len() {
        let p = parent[i] as usize;
        if p == i {
            n += 1;
            parent[i] = n;
        } else {
            // `p < i`: its entry already holds the component's label.
            parent[i] = parent[p];
        }
    }
    (parent, n)
}

/// Voxel count of each component (index 0 unused).
pub(crate) fn component_sizes(table: &RunTable, labels: &[u32], n: u32) -> Vec<u64> {
    let mut sizes = vec![0u64; n as usize + 1];
    for slab in &table.slabs {
        let ls = &labels[slab.base..slab.base + slab.runs.len()];
        for (r, &l) in slab.runs.iter().zip(ls) {
            sizes[l as usize] += (r.e - r.s) as u64;
        }
    }
    sizes
}

// ---------------------------------------------------------------------------------------
// Row access and run extraction from voxel predicates.

/// Read access to the rows of a 3D view through raw strides, shareable across threads.
pub(crate) struct Rows<'a, T> {
    ptr: *const T,
    strides: [isize; 3],
    shape: [usize; 3],
    _life: PhantomData<&'a T>,
}

// SAFETY: `Rows` is a read-only view; sharing it is as safe as sharing `&[T]`.
unsafe impl<T: Sync> Sync for Rows<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Send for Rows<'_, T> {}

impl<'a, T: Copy> Rows<'a, T> {
    pub fn new(v: ArrayView3<'a, T>) -> Self {
        let s = v.strides();
        let sh = v.shape();
        Rows {
            ptr: v.as_ptr(),
            strides: [s[0], s[1], s[2]],
            shape: [sh[0], sh[1], sh[2]],
            _life: PhantomData,
        }
    }

    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Hints the CPU to fetch the cache line holding voxel `(x, y, z)` (no-op elsewhere).
    #[inline(always)]
    pub fn prefetch(&self, x: usize, y: usize, z: usize) {
        if x < self.shape[0] && y < self.shape[1] && z < self.shape[2] {
            let off = x as isize * self.strides[0] + y as isize * self.strides[1] + z as isize * self.strides[2];
            let p = self.ptr.wrapping_offset(off);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: prefetching is a hint; it never faults, whatever the address.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let _ = p;
        }
    }

    /// Row `(x, y)` from `z0` to `z1`, borrowed when contiguous, else gathered into `buf`.
    #[inline]
    pub fn row<'b>(&'b self, x: usize, y: usize, z0: usize, z1: usize, buf: &'b mut Vec<T>) -> &'b [T] {
        debug_assert!(x < self.shape[0] && y < self.shape[1] && z0 <= z1 && z1 <= self.shape[2]);
        let n = z1 - z0;
        if n == 0 {
            return &[];
        }
        // SAFETY: indices are within the view's shape, so every offset lands inside it.
        unsafe {
            let start = self
                .ptr
                .offset(x as isize * self.strides[0] + y as isize * self.strides[1] + z0 as isize * self.strides[2]);
            if self.strides[2] == 1 || n <= 1 {
                std::slice::from_raw_parts(start, n)
            } else {
                buf.clear();
                buf.extend((0..n).map(|k| *start.offset(k as isize * self.strides[2])));
                &buf[..]
            }
        }
    }
}

/// Write access to the rows of a 3D view, shareable across threads on the promise that no
/// row is accessed by two threads (see [`RowsMut::write_row`]).
pub(crate) struct RowsMut<'a, T> {
    ptr: *mut T,
    strides: [isize; 3],
    shape: [usize; 3],
    _life: PhantomData<&'a mut T>,
}

// SAFETY: writers promise disjoint rows (see `write_row`), so this is like handing out
// disjoint `&mut [T]` to several threads.
unsafe impl<T: Send> Sync for RowsMut<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for RowsMut<'_, T> {}

impl<'a, T: Copy> RowsMut<'a, T> {
    pub fn new(mut v: ndarray::ArrayViewMut3<'a, T>) -> Self {
        let s = v.strides();
        let (s, sh) = ([s[0], s[1], s[2]], [v.shape()[0], v.shape()[1], v.shape()[2]]);
        RowsMut {
            ptr: v.as_mut_ptr(),
            strides: s,
            shape: sh,
            _life: PhantomData,
        }
    }

    /// Copies `src` into row `(x, y)` (its length must be the row's).
    ///
    /// # Safety
    /// No other thread may read or write row `(x, y)` during the call.
    #[inline]
    pub unsafe fn write_row(&self, x: usize, y: usize, src: &[T]) {
        assert!(x < self.shape[0] && y < self.shape[1] && src.len() == self.shape[2]);
        // SAFETY: in bounds (asserted); exclusive access to the row is the caller's promise.
        unsafe {
            let start = self
                .ptr
                .offset(x as isize * self.strides[0] + y as isize * self.strides[1]);
            if self.strides[2] == 1 {
                std::ptr::copy_nonoverlapping(src.as_ptr(), start, src.len());
            } else {
                for (k, &v) in src.iter().enumerate() {
                    *start.offset(k as isize * self.strides[2]) = v;
                }
            }
        }
    }
}

/// Writes `src` into a 1D output view (a copy when both are contiguous).
#[inline]
pub(crate) fn copy_into<T: Copy>(dst: &mut ArrayViewMut1<'_, T>, src: &[T]) {
    if let Some(d) = dst.as_slice_mut() {
        d.copy_from_slice(src);
    } else {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s;
        }
    }
}

const PACK_MAGIC: u64 = 0x0102_0408_1020_4080;

/// Packs 0/1 bytes into bits (byte `i` → bit `i`), zero-padding the last word.
#[inline]
pub(crate) fn pack_bytes(bytes: &[u8], words: &mut Vec<u64>) {
    #[inline(always)]
    fn pack64(c: &[u8]) -> u64 {
        let mut w = 0u64;
        for k in 0..8 {
            let v = u64::from_le_bytes(c[k * 8..k * 8 + 8].try_into().unwrap());
            w |= (v.wrapping_mul(PACK_MAGIC) >> 56) << (8 * k);
        }
        w
    }
    words.clear();
    let chunks = bytes.chunks_exact(64);
    let rem = chunks.remainder();
    for c in chunks {
        words.push(pack64(c));
    }
    if !rem.is_empty() {
        let mut tmp = [0u8; 64];
        tmp[..rem.len()].copy_from_slice(rem);
        words.push(pack64(&tmp));
    }
}

/// Appends the runs of set bits of `words` (a row of `n` voxels; bits past `n` are zero).
#[inline]
pub(crate) fn runs_from_words(words: &[u64], n: usize, out: &mut Vec<Run>) {
    let mut carry = 0u64;
    let mut inside = false;
    let mut start = 0u32;
    for (wi, &w) in words.iter().enumerate() {
        let mut t = w ^ ((w << 1) | carry);
        carry = w >> 63;
        while t != 0 {
            let pos = (wi * 64) as u32 + t.trailing_zeros();
            if inside {
                out.push(Run { s: start, e: pos });
            } else {
                start = pos;
            }
            inside = !inside;
            t &= t - 1;
        }
    }
    if inside {
        out.push(Run { s: start, e: n as u32 });
    }
}

/// Scratch buffers for predicate-based run extraction.
pub(crate) struct MaskScratch<T> {
    pub bytes: Vec<u8>,
    pub words: Vec<u64>,
    pub gather: Vec<T>,
}

impl<T> MaskScratch<T> {
    pub fn new(n: usize) -> Self {
        MaskScratch {
            bytes: vec![0; n],
            words: Vec::with_capacity(n.div_ceil(64)),
            gather: Vec::new(),
        }
    }
}

/// Rows of a 3D view whose foreground is `pred(value)`.
pub(crate) struct PredicateRows<'a, T, P> {
    pub rows: Rows<'a, T>,
    pub pred: P,
}

impl<T, P> RowRuns for PredicateRows<'_, T, P>
where
    T: Copy + Send + Sync,
    P: Fn(T) -> bool + Sync,
{
    type Scratch = MaskScratch<T>;

    fn scratch(&self) -> MaskScratch<T> {
        MaskScratch::new(self.rows.shape()[2])
    }

    #[inline]
    fn push_runs(&self, x: usize, y: usize, sc: &mut MaskScratch<T>, out: &mut Vec<Run>) {
        let nz = self.rows.shape()[2];
        let row = self.rows.row(x, y, 0, nz, &mut sc.gather);
        for (b, &v) in sc.bytes.iter_mut().zip(row) {
            *b = (self.pred)(v) as u8;
        }
        pack_bytes(&sc.bytes, &mut sc.words);
        runs_from_words(&sc.words, nz, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows given as bit patterns, through `extract`, with and without a rank index.
    struct BitRows(Vec<Vec<bool>>);

    impl RowRuns for BitRows {
        type Scratch = ();
        fn scratch(&self) {}
        fn push_runs(&self, _x: usize, y: usize, _: &mut (), out: &mut Vec<Run>) {
            let row = &self.0[y];
            let mut z = 0;
            while z < row.len() {
                if row[z] {
                    let s = z;
                    while z < row.len() && row[z] {
                        z += 1;
                    }
                    out.push(Run {
                        s: s as u32,
                        e: z as u32,
                    });
                } else {
                    z += 1;
                }
            }
        }
    }

    #[test]
    fn rank_index_and_scan_agree() {
        let mut state = 12345u64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for nz in [1usize, 5, 63, 64, 65, 150] {
            let rows: Vec<Vec<bool>> = (0..15)
                .map(|k| (0..nz).map(|_| rnd() % 100 < [5, 30, 50, 70, 95][k % 5]).collect())
                .collect();
            let grid = Grid {
                nx: 1,
                ny: rows.len(),
                nz,
            };
            let table = extract(grid, &BitRows(rows)).unwrap();
            let slab = &table.slabs[0];
            for y in 0..grid.ny {
                let ix = slab.row_index(y, table.nw, 0);
                let scan = RowIndex { index: None, ..ix };
                for s in 0..nz as u32 {
                    for e in s + 1..=nz as u32 {
                        for diag in [false, true] {
                            let got = ix.touching(s, e, diag, nz);
                            assert_eq!(got, scan.touching(s, e, diag, nz), "nz {nz} row {y} [{s},{e}) {diag}");
                            // And by definition.
                            let d = diag as u32;
                            let want: Vec<u32> = (0..ix.runs.len() as u32)
                                .filter(|&j| {
                                    let r = ix.runs[j as usize];
                                    r.s < e + d && s < r.e + d
                                })
                                .collect();
                            assert_eq!((got.0..got.1).collect::<Vec<_>>(), want);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pack_and_runs() {
        let mut bytes = vec![0u8; 150];
        for i in [0usize, 1, 2, 63, 64, 65, 100, 149] {
            bytes[i] = 1;
        }
        let mut words = Vec::new();
        pack_bytes(&bytes, &mut words);
        assert_eq!(words.len(), 3);
        for (i, &b) in bytes.iter().enumerate() {
            assert_eq!((words[i / 64] >> (i % 64)) & 1, b as u64, "bit {i}");
        }
        let mut runs = Vec::new();
        runs_from_words(&words, 150, &mut runs);
        let want = [(0, 3), (63, 66), (100, 101), (149, 150)];
        assert_eq!(runs, want.iter().map(|&(s, e)| Run { s, e }).collect::<Vec<_>>());
    }
}
