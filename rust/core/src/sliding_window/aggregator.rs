//! Accumulation of windowed predictions over a volume (nnU-Net's sliding-window scheme).
//!
//! Storage is split by position along the first spatial axis ("plane"): a plane holds the `C`
//! channel sums `(C, Y, Z)` and the weight sum `(Y, Z)`, behind its own mutex (see `planes`).
//! An add works plane by plane in parallel (rayon over the window's first axis); concurrent adds
//! from several threads only wait for each other on the planes they share (striped locks).
//! Finalisation and argmax read plane by plane too, so labels come straight from the sums
//! without a normalised `(C, *shape)` copy.
//!
//! Streaming mode keeps only `min(patch[0], shape[0])` planes in a ring: a plane `x` lives in
//! slot `x % depth`. Windows arrive in non-decreasing order of their first-axis start `s`, so
//! when a window with a larger `s` arrives, every plane below `s` is final: it is normalised
//! (or argmax'ed), queued as a slab, and its slot zeroed for reuse.
//!
//! 2D volumes are handled as 3D with a middle axis of length 1.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use half::f16;
use ndarray::{s, Array3, Array4, ArrayD, ArrayView4, ArrayViewD, ArrayViewMut3, Axis, Ix4, IxDyn};
use rayon::prelude::*;

use super::gaussian_importance_map;
use super::planes::{advise_huge_pages, PlaneMut, Planes};
use super::rows::{AccElem, PredElem};
use crate::{KernelError, KernelResult};

/// How a window's voxels are weighted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weighting {
    /// nnU-Net's Gaussian importance map (σ = patch × sigma_scale, max = value_scaling_factor).
    Gaussian,
    /// Every voxel weighs 1 (plain averaging).
    Constant,
}

/// Storage type of the accumulators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccDtype {
    F32,
    /// nnU-Net's choice: half the memory, sums rounded to float16 after every add.
    F16,
}

/// What a streaming aggregator hands back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Normalised float32 logits `(C, depth, ...)`.
    Logits,
    /// Argmax labels `(depth, ...)`, u8 or u16.
    Labels,
}

/// What happens to voxels no window covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uncovered {
    /// Finalisation fails, naming the count and the first such voxel.
    Error,
    /// Their logits are 0 and their label is 0.
    Zero,
}

#[derive(Clone, Debug)]
pub struct AggregatorConfig {
    pub num_channels: usize,
    /// Spatial shape, 2 or 3 axes.
    pub shape: Vec<usize>,
    /// Window shape, same number of axes as `shape`.
    pub patch_size: Vec<usize>,
    pub weighting: Weighting,
    pub sigma_scale: f64,
    pub value_scaling_factor: f64,
    pub dtype: AccDtype,
    pub streaming: bool,
    pub output: Output,
    pub uncovered: Uncovered,
}

impl AggregatorConfig {
    /// nnU-Net's defaults: Gaussian weighting (σ 1/8, scale 10), float32 sums, not streaming.
    pub fn new(num_channels: usize, shape: &[usize], patch_size: &[usize]) -> Self {
        AggregatorConfig {
            num_channels,
            shape: shape.to_vec(),
            patch_size: patch_size.to_vec(),
            weighting: Weighting::Gaussian,
            sigma_scale: 0.125,
            value_scaling_factor: 10.0,
            dtype: AccDtype::F32,
            streaming: false,
            output: Output::Logits,
            uncovered: Uncovered::Error,
        }
    }
}

/// A window prediction `(C, *patch_size)`, in any of the accepted element types.
pub enum Prediction<'a> {
    F32(ArrayViewD<'a, f32>),
    F16(ArrayViewD<'a, f16>),
    /// bfloat16 as raw bits (e.g. `tensor.view(torch.int16).numpy()`).
    Bf16Bits(ArrayViewD<'a, i16>),
}

impl Prediction<'_> {
    fn shape(&self) -> &[usize] {
        match self {
            Prediction::F32(v) => v.shape(),
            Prediction::F16(v) => v.shape(),
            Prediction::Bf16Bits(v) => v.shape(),
        }
    }
}

/// Output of a finished range of planes `[start, stop)` along the first axis.
pub enum SlabData {
    /// `(C, stop - start, ...)`
    Logits(ArrayD<f32>),
    /// `(stop - start, ...)`, when num_channels <= 256
    LabelsU8(ArrayD<u8>),
    /// `(stop - start, ...)`, when num_channels > 256
    LabelsU16(ArrayD<u16>),
}

pub struct Slab {
    pub start: usize,
    pub stop: usize,
    pub data: SlabData,
}

enum Store {
    F32(Planes<f32>),
    F16(Planes<f16>),
}

struct StreamState {
    last_start: Option<isize>,
    /// first plane not yet handed out
    lo: usize,
    flushed: bool,
}

/// Accumulates weighted window predictions; see the module documentation.
pub struct Aggregator {
    cfg: AggregatorConfig,
    /// `[X, Y, Z]` (Y = 1 in 2D)
    dims: [usize; 3],
    /// `[P0, P1, P2]` (P1 = 1 in 2D)
    patch: [usize; 3],
    /// Gaussian map `(P0, P1, P2)` row-major, float32 (holding float16 values in F16 mode);
    /// empty for constant weighting.
    weights: Arc<Vec<f32>>,
    /// `P2` ones, the weight rows of constant weighting.
    ones: Vec<f32>,
    /// number of planes stored (X, or the ring depth in streaming mode)
    slots: usize,
    store: Store,
    stream: Mutex<StreamState>,
    ready: Mutex<VecDeque<Slab>>,
}

type WeightKey = (Vec<usize>, u64, u64, AccDtype);

/// The Gaussian weights of the last two configurations (nnU-Net caches its map the same way):
/// float32, holding float16-rounded values for a float16 accumulator.
fn cached_weights(patch: &[usize], sigma_scale: f64, vsf: f64, dtype: AccDtype) -> KernelResult<Arc<Vec<f32>>> {
    static CACHE: Mutex<Vec<(WeightKey, Arc<Vec<f32>>)>> = Mutex::new(Vec::new());
    let key: WeightKey = (patch.to_vec(), sigma_scale.to_bits(), vsf.to_bits(), dtype);
    {
        let mut cache = lock(&CACHE);
        if let Some(i) = cache.iter().position(|(k, _)| *k == key) {
            let hit = cache.remove(i);
            let w = Arc::clone(&hit.1);
            cache.insert(0, hit);
            return Ok(w);
        }
    }
    let w: Vec<f32> = match dtype {
        AccDtype::F32 => {
            gaussian_importance_map::<f32>(patch, sigma_scale, vsf)?
                .into_raw_vec_and_offset()
                .0
        }
        AccDtype::F16 => {
            let half = gaussian_importance_map::<f16>(patch, sigma_scale, vsf)?;
            let mut w = crate::mem::try_with_capacity("gaussian importance map", half.len())?;
            w.extend(half.iter().map(|v| v.to_f32()));
            w
        }
    };
    let w = Arc::new(w);
    let mut cache = lock(&CACHE);
    cache.insert(0, (key, Arc::clone(&w)));
    cache.truncate(2);
    Ok(w)
}

/// voxels per chunk in the normalise/argmax loops (stack buffers)
const CHUNK: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Findings of a normalisation pass, merged across planes.
#[derive(Clone, Copy, Default)]
struct Check {
    uncovered: usize,
    /// `(x, in-plane flat index)` of the first uncovered voxel
    first: Option<(usize, usize)>,
    overflow: bool,
}

impl Check {
    fn merge(self, o: Check) -> Check {
        let first = match (self.first, o.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Check {
            uncovered: self.uncovered + o.uncovered,
            first,
            overflow: self.overflow || o.overflow,
        }
    }
}

trait Label: Copy + Default + Send + Sync + 'static {
    fn from_index(i: u16) -> Self;
}
impl Label for u8 {
    #[inline]
    fn from_index(i: u16) -> Self {
        i as u8
    }
}
impl Label for u16 {
    #[inline]
    fn from_index(i: u16) -> Self {
        i
    }
}

/// Overflow can only come from float16 sums.
trait Overflow {
    const CHECK: bool;
}
impl Overflow for f32 {
    const CHECK: bool = false;
}
impl Overflow for f16 {
    const CHECK: bool = true;
}

impl Aggregator {
    pub fn new(cfg: AggregatorConfig) -> KernelResult<Self> {
        let nd = cfg.shape.len();
        if cfg.num_channels == 0 || cfg.num_channels > 65536 {
            return Err(KernelError::invalid(
                "num_channels",
                format!("must be between 1 and 65536, got {}", cfg.num_channels),
            ));
        }
        if nd != 2 && nd != 3 {
            return Err(KernelError::shape(
                "shape",
                format!("expected 2 or 3 spatial axes, got {:?}", cfg.shape),
            ));
        }
        if cfg.shape.contains(&0) {
            return Err(KernelError::invalid(
                "shape",
                format!("every value must be >= 1, got {:?}", cfg.shape),
            ));
        }
        if cfg.patch_size.len() != nd {
            return Err(KernelError::shape(
                "patch_size",
                format!("has {} values but shape has {}", cfg.patch_size.len(), nd),
            ));
        }
        if cfg.patch_size.contains(&0) {
            return Err(KernelError::invalid(
                "patch_size",
                format!("every value must be >= 1, got {:?}", cfg.patch_size),
            ));
        }
        let (dims, patch) = if nd == 3 {
            (
                [cfg.shape[0], cfg.shape[1], cfg.shape[2]],
                [cfg.patch_size[0], cfg.patch_size[1], cfg.patch_size[2]],
            )
        } else {
            (
                [cfg.shape[0], 1, cfg.shape[1]],
                [cfg.patch_size[0], 1, cfg.patch_size[1]],
            )
        };
        // element counts must be addressable (the argument is named); the storage itself is
        // allocated fallibly below, so a merely huge volume is a MemoryError
        let mut full = vec![cfg.num_channels];
        full.extend_from_slice(&cfg.shape);
        crate::mem::bytes_of::<f32>("shape", crate::mem::elements("shape", &full)?)?;
        crate::mem::bytes_of::<f32>("patch_size", crate::mem::elements("patch_size", &cfg.patch_size)?)?;
        let weights = match cfg.weighting {
            Weighting::Constant => Arc::new(Vec::new()),
            Weighting::Gaussian => {
                cached_weights(&cfg.patch_size, cfg.sigma_scale, cfg.value_scaling_factor, cfg.dtype)?
            }
        };
        let slots = if cfg.streaming { patch[0].min(dims[0]) } else { dims[0] };
        let plane_len = cfg.num_channels * dims[1] * dims[2];
        let store = match cfg.dtype {
            AccDtype::F32 => Store::F32(Planes::new(slots, plane_len, dims[1] * dims[2])?),
            AccDtype::F16 => Store::F16(Planes::new(slots, plane_len, dims[1] * dims[2])?),
        };
        Ok(Aggregator {
            dims,
            patch,
            weights,
            ones: crate::mem::try_filled("aggregator weights", patch[2], 1.0f32)?,
            slots,
            store,
            stream: Mutex::new(StreamState {
                last_start: None,
                lo: 0,
                flushed: false,
            }),
            ready: Mutex::new(VecDeque::new()),
            cfg,
        })
    }

    pub fn config(&self) -> &AggregatorConfig {
        &self.cfg
    }

    /// The weight map of one window, `patch_size`-shaped (all ones for constant weighting).
    pub fn importance_map(&self) -> KernelResult<ArrayD<f32>> {
        let n = self.patch.iter().product();
        let mut data = crate::mem::try_with_capacity("importance map", n)?;
        if self.weights.is_empty() {
            data.resize(n, 1.0f32);
        } else {
            data.extend_from_slice(&self.weights);
        }
        Ok(ArrayD::from_shape_vec(IxDyn(&self.cfg.patch_size), data).expect("patch-shaped"))
    }

    /// Label dtype width: 8 bits while `num_channels - 1 <= 255`, else 16.
    pub fn labels_are_u8(&self) -> bool {
        self.cfg.num_channels <= 256
    }

    #[inline]
    fn slot(&self, x: usize) -> usize {
        if self.cfg.streaming {
            x % self.slots
        } else {
            x
        }
    }

    /// Clips the window at `start` to the volume: per axis the volume range `[lo, hi)`.
    fn clip(&self, start: &[isize]) -> KernelResult<[isize; 3]> {
        let nd = self.cfg.shape.len();
        if start.len() != nd {
            return Err(KernelError::shape(
                "start",
                format!("expected {nd} values, got {}", start.len()),
            ));
        }
        let st = if nd == 3 {
            [start[0], start[1], start[2]]
        } else {
            [start[0], 0, start[1]]
        };
        for ((&s, &p), &n) in st.iter().zip(&self.patch).zip(&self.dims) {
            if s.max(0) >= (s + p as isize).min(n as isize) {
                return Err(KernelError::invalid(
                    "start",
                    format!(
                        "window at {start:?} with patch_size {:?} lies entirely outside the volume of shape {:?}",
                        self.cfg.patch_size, self.cfg.shape
                    ),
                ));
            }
        }
        Ok(st)
    }

    fn check_prediction(&self, shape: &[usize]) -> KernelResult<()> {
        let nd = self.cfg.shape.len();
        if shape.len() != nd + 1 {
            return Err(KernelError::shape(
                "prediction",
                format!("expected {} dimensions (C, *patch_size), got shape {shape:?}", nd + 1),
            ));
        }
        if shape[0] != self.cfg.num_channels {
            return Err(KernelError::shape(
                "prediction",
                format!(
                    "has {} channels, expected num_channels={}",
                    shape[0], self.cfg.num_channels
                ),
            ));
        }
        if shape[1..] != self.cfg.patch_size[..] {
            return Err(KernelError::shape(
                "prediction",
                format!(
                    "spatial shape {:?} differs from patch_size {:?}",
                    &shape[1..],
                    self.cfg.patch_size
                ),
            ));
        }
        Ok(())
    }

    /// Adds one window prediction `(C, *patch_size)` whose first voxel sits at `start` (which
    /// may be negative, and the window may reach past the end: only the inside part counts).
    ///
    /// Streaming mode: starts along the first axis must not decrease; planes below a larger
    /// start are finished and queued for [`Aggregator::pop_ready`]. Streaming calls must not
    /// overlap in time (the caller serialises them; an overlapping call fails instead of
    /// blocking, since blocking inside the thread pool could deadlock).
    pub fn add(&self, prediction: Prediction<'_>, start: &[isize]) -> KernelResult<()> {
        self.check_prediction(prediction.shape())?;
        let st = self.clip(start)?;
        if !self.cfg.streaming {
            self.accumulate(prediction, st);
            return Ok(());
        }
        let mut state = self.stream_state()?;
        if state.flushed {
            return Err(KernelError::invalid(
                "start",
                "flush() was already called on this streaming aggregator; no window can be added after it",
            ));
        }
        if let Some(last) = state.last_start {
            if st[0] < last {
                return Err(KernelError::invalid(
                    "start",
                    format!(
                        "streaming windows must be added in non-decreasing order of their first-axis start: got {} after {}",
                        st[0], last
                    ),
                ));
            }
        }
        let ready_to = (st[0].max(0) as usize).min(self.dims[0]);
        if ready_to > state.lo {
            let lo = state.lo;
            state.lo = ready_to;
            self.emit(lo, ready_to)?;
        }
        state.last_start = Some(st[0]);
        self.accumulate(prediction, st);
        Ok(())
    }

    fn stream_state(&self) -> KernelResult<MutexGuard<'_, StreamState>> {
        match self.stream.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(e)) => Ok(e.into_inner()),
            Err(TryLockError::WouldBlock) => Err(KernelError::invalid(
                "streaming",
                "another add()/flush() is running on this streaming aggregator; streaming calls must not overlap",
            )),
        }
    }

    /// Streaming: finishes every remaining plane and queues it. Later adds fail; a second
    /// flush does nothing.
    pub fn flush(&self) -> KernelResult<()> {
        if !self.cfg.streaming {
            return Err(KernelError::invalid(
                "streaming",
                "flush() is for streaming aggregators; use finalize() or argmax()",
            ));
        }
        let mut state = self.stream_state()?;
        if state.flushed {
            return Ok(());
        }
        let lo = state.lo;
        state.lo = self.dims[0];
        state.flushed = true;
        self.emit(lo, self.dims[0])
    }

    /// Streaming: takes the finished slabs queued so far, in order of position.
    pub fn pop_ready(&self) -> KernelResult<Vec<Slab>> {
        if !self.cfg.streaming {
            return Err(KernelError::invalid(
                "streaming",
                "pop_ready() is for streaming aggregators; use finalize() or argmax()",
            ));
        }
        Ok(lock(&self.ready).drain(..).collect())
    }

    fn accumulate(&self, prediction: Prediction<'_>, st: [isize; 3]) {
        macro_rules! go {
            ($planes:expr, $view:expr) => {{
                let v = self.as_4d($view);
                self.accumulate_planes($planes, v, st)
            }};
        }
        match (&self.store, prediction) {
            (Store::F32(p), Prediction::F32(v)) => go!(p, v),
            (Store::F32(p), Prediction::F16(v)) => go!(p, v),
            (Store::F32(p), Prediction::Bf16Bits(v)) => go!(p, v),
            (Store::F16(p), Prediction::F32(v)) => go!(p, v),
            (Store::F16(p), Prediction::F16(v)) => go!(p, v),
            (Store::F16(p), Prediction::Bf16Bits(v)) => go!(p, v),
        }
    }

    fn as_4d<'a, P>(&self, v: ArrayViewD<'a, P>) -> ArrayView4<'a, P> {
        let v = if self.cfg.shape.len() == 2 {
            v.insert_axis(Axis(2))
        } else {
            v
        };
        v.into_dimensionality::<Ix4>().expect("checked prediction shape")
    }

    fn accumulate_planes<A: AccElem, P: PredElem>(&self, planes: &Planes<A>, pred: ArrayView4<'_, P>, st: [isize; 3]) {
        let [nx, ny, nz] = self.dims;
        let [_, p1, p2] = self.patch;
        let range = |d: usize| {
            let lo = st[d].max(0) as usize;
            let hi = ((st[d] + self.patch[d] as isize) as usize).min(self.dims[d]);
            (lo, hi)
        };
        let (x0, x1) = range(0);
        let (y0, y1) = range(1);
        let (z0, z1) = range(2);
        debug_assert!(x1 <= nx);
        let zl = z1 - z0;
        let pz = (z0 as isize - st[2]) as usize;
        let c_n = self.cfg.num_channels;
        let gaussian = !self.weights.is_empty();
        (x0..x1).into_par_iter().for_each_init(
            || vec![0f32; zl],
            |buf, x| {
                let px = (x as isize - st[0]) as usize;
                let plane = planes.lock(self.slot(x));
                for c in 0..c_n {
                    for y in y0..y1 {
                        let py = (y as isize - st[1]) as usize;
                        let row = pred.slice(s![c, px, py, pz..pz + zl]);
                        let p = P::row_f32(row, buf);
                        let off = (c * ny + y) * nz + z0;
                        let acc = &mut plane.acc[off..off + zl];
                        if gaussian {
                            let wo = (px * p1 + py) * p2 + pz;
                            A::accumulate(acc, p, &self.weights[wo..wo + zl]);
                        } else {
                            A::add(acc, p);
                        }
                    }
                }
                for y in y0..y1 {
                    let py = (y as isize - st[1]) as usize;
                    let w: &[f32] = if gaussian {
                        let wo = (px * p1 + py) * p2 + pz;
                        &self.weights[wo..wo + zl]
                    } else {
                        &self.ones[..zl]
                    };
                    let off = y * nz + z0;
                    A::add(&mut plane.w[off..off + zl], w);
                }
            },
        );
    }

    /// Normalised float32 logits `(C, *shape)`: sums / weights.
    pub fn finalize(&self) -> KernelResult<ArrayD<f32>> {
        if self.cfg.streaming {
            return Err(KernelError::invalid(
                "streaming",
                "finalize() needs the whole volume; a streaming aggregator hands back slabs through pop_ready()/flush()",
            ));
        }
        let out = match &self.store {
            Store::F32(p) => self.logits_range(p, 0, self.dims[0], false)?,
            Store::F16(p) => self.logits_range(p, 0, self.dims[0], false)?,
        };
        Ok(self.reshape_logits(out))
    }

    /// Argmax labels `(*shape)` (u8 while num_channels <= 256, else u16), from the sums
    /// without a normalised copy; ties go to the lowest channel, NaN wins like numpy.
    pub fn argmax(&self) -> KernelResult<SlabData> {
        if self.cfg.streaming {
            return Err(KernelError::invalid(
                "streaming",
                "argmax() needs the whole volume; a streaming aggregator hands back slabs through pop_ready()/flush()",
            ));
        }
        self.labels_range(0, self.dims[0], false)
    }

    fn reshape_logits(&self, a: Array4<f32>) -> ArrayD<f32> {
        if self.cfg.shape.len() == 3 {
            return a.into_dyn();
        }
        let (c, d, _, z) = a.dim();
        a.into_shape_with_order(IxDyn(&[c, d, z]))
            .expect("standard layout")
            .into_dyn()
    }

    fn reshape_labels<L>(&self, a: Array3<L>) -> ArrayD<L> {
        if self.cfg.shape.len() == 3 {
            return a.into_dyn();
        }
        let (d, _, z) = a.dim();
        a.into_shape_with_order(IxDyn(&[d, z]))
            .expect("standard layout")
            .into_dyn()
    }

    /// Hands planes `[a, b)` out as a slab and clears their ring slots.
    fn emit(&self, a: usize, b: usize) -> KernelResult<()> {
        let data = match self.cfg.output {
            Output::Logits => {
                let out = match &self.store {
                    Store::F32(p) => self.logits_range(p, a, b, true)?,
                    Store::F16(p) => self.logits_range(p, a, b, true)?,
                };
                SlabData::Logits(self.reshape_logits(out))
            }
            Output::Labels => self.labels_range(a, b, true)?,
        };
        lock(&self.ready).push_back(Slab {
            start: a,
            stop: b,
            data,
        });
        Ok(())
    }

    fn labels_range(&self, a: usize, b: usize, clear: bool) -> KernelResult<SlabData> {
        Ok(match (&self.store, self.labels_are_u8()) {
            (Store::F32(p), true) => {
                SlabData::LabelsU8(self.reshape_labels(self.labels_planes::<f32, u8>(p, a, b, clear)?))
            }
            (Store::F32(p), false) => {
                SlabData::LabelsU16(self.reshape_labels(self.labels_planes::<f32, u16>(p, a, b, clear)?))
            }
            (Store::F16(p), true) => {
                SlabData::LabelsU8(self.reshape_labels(self.labels_planes::<f16, u8>(p, a, b, clear)?))
            }
            (Store::F16(p), false) => {
                SlabData::LabelsU16(self.reshape_labels(self.labels_planes::<f16, u16>(p, a, b, clear)?))
            }
        })
    }

    fn verdict(&self, check: Check) -> KernelResult<()> {
        if check.overflow {
            return Err(KernelError::invalid(
                "dtype",
                "the float16 accumulator overflowed (inf): use dtype='float32' (nnU-Net raises here too)",
            ));
        }
        if check.uncovered > 0 && self.cfg.uncovered == Uncovered::Error {
            let (x, flat) = check.first.expect("uncovered voxels have a first one");
            let (y, z) = (flat / self.dims[2], flat % self.dims[2]);
            let at: Vec<usize> = if self.cfg.shape.len() == 3 {
                vec![x, y, z]
            } else {
                vec![x, z]
            };
            return Err(KernelError::invalid(
                "uncovered",
                format!(
                    "{} voxel(s) were never covered by an added window (first at {at:?}); add windows covering the whole shape {:?}, or pass uncovered='zero' to give them logits 0 and label 0",
                    check.uncovered, self.cfg.shape
                ),
            ));
        }
        Ok(())
    }

    fn logits_range<A: AccElem + Overflow>(
        &self,
        planes: &Planes<A>,
        a: usize,
        b: usize,
        clear: bool,
    ) -> KernelResult<Array4<f32>> {
        let [_, ny, nz] = self.dims;
        let oshape = (self.cfg.num_channels, b - a, ny, nz);
        let buf = crate::mem::try_zeroed::<f32>("aggregated logits", oshape.0 * oshape.1 * ny * nz)?;
        let mut out = Array4::from_shape_vec(oshape, buf).expect("output length");
        let check = out
            .axis_iter_mut(Axis(1))
            .into_par_iter()
            .enumerate()
            .map(|(i, mut view)| {
                let x = a + i;
                let guard = planes.lock(self.slot(x));
                let check = self.normalize_plane(&guard, x, &mut view);
                if clear {
                    A::fill_zero(guard.acc);
                    A::fill_zero(guard.w);
                }
                check
            })
            .reduce(Check::default, Check::merge);
        self.verdict(check)?;
        Ok(out)
    }

    fn normalize_plane<A: AccElem + Overflow>(
        &self,
        plane: &PlaneMut<'_, A>,
        x: usize,
        out: &mut ArrayViewMut3<'_, f32>,
    ) -> Check {
        let yz = self.dims[1] * self.dims[2];
        let mut check = Check::default();
        let mut wbuf = [0f32; CHUNK];
        let mut abuf = [0f32; CHUNK];
        let mut start = 0;
        while start < yz {
            let n = CHUNK.min(yz - start);
            let w = A::as_f32(&plane.w[start..start + n], &mut wbuf);
            for (i, &wv) in w.iter().enumerate() {
                if wv == 0.0 {
                    check.uncovered += 1;
                    if check.first.is_none() {
                        check.first = Some((x, start + i));
                    }
                }
            }
            for c in 0..self.cfg.num_channels {
                let acc = A::as_f32(&plane.acc[c * yz + start..c * yz + start + n], &mut abuf);
                if A::CHECK && acc.iter().any(|v| v.is_infinite()) {
                    check.overflow = true;
                }
                let mut ch = out.index_axis_mut(Axis(0), c);
                let dst = &mut ch.as_slice_mut().expect("contiguous output plane")[start..start + n];
                for i in 0..n {
                    dst[i] = if w[i] == 0.0 { 0.0 } else { acc[i] / w[i] };
                }
            }
            start += n;
        }
        check
    }

    fn labels_planes<A: AccElem + Overflow, L: Label>(
        &self,
        planes: &Planes<A>,
        a: usize,
        b: usize,
        clear: bool,
    ) -> KernelResult<Array3<L>> {
        let [_, ny, nz] = self.dims;
        let buf = crate::mem::try_filled("aggregated labels", (b - a) * ny * nz, L::default())?;
        let mut out = Array3::from_shape_vec((b - a, ny, nz), buf).expect("output length");
        advise_huge_pages(out.as_mut_ptr() as *mut u8, out.len() * std::mem::size_of::<L>());
        let check = out
            .axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .map(|(i, mut view)| {
                let x = a + i;
                let guard = planes.lock(self.slot(x));
                let dst = view.as_slice_mut().expect("contiguous label plane");
                let check = self.argmax_plane(&guard, x, dst);
                if clear {
                    A::fill_zero(guard.acc);
                    A::fill_zero(guard.w);
                }
                check
            })
            .reduce(Check::default, Check::merge);
        self.verdict(check)?;
        Ok(out)
    }

    /// Argmax over channels of `acc / w` (the very values finalize() returns, so the labels
    /// equal `finalize().argmax(0)` exactly).
    fn argmax_plane<A: AccElem + Overflow, L: Label>(&self, plane: &PlaneMut<'_, A>, x: usize, dst: &mut [L]) -> Check {
        let yz = self.dims[1] * self.dims[2];
        let mut check = Check::default();
        let mut wbuf = [0f32; CHUNK];
        let mut abuf = [0f32; CHUNK];
        let mut best = [0f32; CHUNK];
        let mut idx = [0u32; CHUNK];
        let mut start = 0;
        while start < yz {
            let n = CHUNK.min(yz - start);
            let w = A::as_f32(&plane.w[start..start + n], &mut wbuf);
            for c in 0..self.cfg.num_channels {
                let acc = A::as_f32(&plane.acc[c * yz + start..c * yz + start + n], &mut abuf);
                if A::CHECK && acc.iter().any(|v| v.is_infinite()) {
                    check.overflow = true;
                }
                let (best, idx) = (&mut best[..n], &mut idx[..n]);
                if c == 0 {
                    for i in 0..n {
                        best[i] = acc[i] / w[i];
                        idx[i] = 0;
                    }
                } else {
                    argmax_step(best, idx, acc, w, c as u32);
                }
            }
            let out = &mut dst[start..start + n];
            for i in 0..n {
                if w[i] == 0.0 {
                    check.uncovered += 1;
                    if check.first.is_none() {
                        check.first = Some((x, start + i));
                    }
                    out[i] = L::from_index(0);
                } else {
                    out[i] = L::from_index(idx[i] as u16);
                }
            }
            start += n;
        }
        check
    }
}

/// One channel of the running argmax: where `acc / w` beats `best` (or is the first NaN, as in
/// numpy), take it. Branch-free with lanes of equal width, so it vectorises.
#[inline]
fn argmax_step(best: &mut [f32], idx: &mut [u32], acc: &[f32], w: &[f32], c: u32) {
    let n = best.len();
    let (idx, acc, w) = (&mut idx[..n], &acc[..n], &w[..n]);
    for i in 0..n {
        let v = acc[i] / w[i];
        let b = best[i];
        #[allow(clippy::eq_op)]
        let take = (v > b) | ((v != v) & (b == b));
        // blend with a mask: straight-line code, no conditional stores
        let m = (take as u32).wrapping_neg();
        best[i] = f32::from_bits((v.to_bits() & m) | (b.to_bits() & !m));
        idx[i] = (c & m) | (idx[i] & !m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, Dimension};

    fn pred(c: usize, patch: &[usize], seed: u32) -> ArrayD<f32> {
        let mut shape = vec![c];
        shape.extend_from_slice(patch);
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        ArrayD::from_shape_fn(IxDyn(&shape), |_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 1000) as f32 / 100.0 - 5.0
        })
    }

    /// Straightforward full-volume accumulation, the oracle.
    fn naive(
        c: usize,
        shape: &[usize],
        patch: &[usize],
        windows: &[(Vec<isize>, ArrayD<f32>)],
        w: &ArrayD<f32>,
    ) -> ArrayD<f32> {
        let mut full = vec![c];
        full.extend_from_slice(shape);
        let mut acc = ArrayD::<f32>::zeros(IxDyn(&full));
        let mut wsum = ArrayD::<f32>::zeros(IxDyn(shape));
        for (start, p) in windows {
            for (idx, &wv) in w.indexed_iter() {
                let pos: Vec<isize> = idx.slice().iter().zip(start).map(|(&i, &s)| i as isize + s).collect();
                if pos.iter().zip(shape).any(|(&q, &n)| q < 0 || q >= n as isize) {
                    continue;
                }
                let pos: Vec<usize> = pos.iter().map(|&q| q as usize).collect();
                wsum[IxDyn(&pos)] += wv;
                for ch in 0..c {
                    let mut pi = vec![ch];
                    pi.extend_from_slice(idx.slice());
                    let mut ai = vec![ch];
                    ai.extend_from_slice(&pos);
                    acc[IxDyn(&ai)] += p[IxDyn(&pi)] * wv;
                }
            }
        }
        let _ = patch;
        for ch in 0..c {
            let mut a = acc.index_axis_mut(Axis(0), ch);
            a.zip_mut_with(&wsum, |v, &s| *v /= s);
        }
        acc
    }

    fn windows(shape: &[usize], patch: &[usize], c: usize) -> Vec<(Vec<isize>, ArrayD<f32>)> {
        let steps = super::super::sliding_window_starts(shape, patch, 0.5).unwrap();
        let mut out = Vec::new();
        let mut k = 0;
        let mut rec = vec![0usize; steps.len()];
        loop {
            let start: Vec<isize> = rec.iter().enumerate().map(|(d, &i)| steps[d][i] as isize).collect();
            out.push((start, pred(c, patch, k)));
            k += 1;
            let mut d = steps.len();
            loop {
                if d == 0 {
                    return out;
                }
                d -= 1;
                rec[d] += 1;
                if rec[d] < steps[d].len() {
                    break;
                }
                rec[d] = 0;
            }
        }
    }

    #[test]
    fn matches_naive_3d_and_2d() {
        for (shape, patch) in [(vec![9usize, 7, 11], vec![4usize, 5, 6]), (vec![13, 10], vec![6, 4])] {
            let c = 3;
            let wins = windows(&shape, &patch, c);
            let agg = Aggregator::new(AggregatorConfig::new(c, &shape, &patch)).unwrap();
            for (s, p) in &wins {
                agg.add(Prediction::F32(p.view()), s).unwrap();
            }
            let got = agg.finalize().unwrap();
            let want = naive(c, &shape, &patch, &wins, &agg.importance_map().unwrap());
            assert_eq!(got.shape(), want.shape());
            for (a, b) in got.iter().zip(want.iter()) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
            let labels = match agg.argmax().unwrap() {
                SlabData::LabelsU8(l) => l,
                _ => panic!("u8 labels expected"),
            };
            for (pos, &l) in labels.indexed_iter() {
                let mut best = (0usize, f32::MIN);
                for ch in 0..c {
                    let mut i = vec![ch];
                    i.extend_from_slice(pos.slice());
                    let v = got[IxDyn(&i)];
                    if v > best.1 {
                        best = (ch, v);
                    }
                }
                assert_eq!(l as usize, best.0);
            }
        }
    }

    #[test]
    fn streaming_matches_whole() {
        let (shape, patch, c) = (vec![15usize, 6, 7], vec![5usize, 4, 4], 2);
        let wins = windows(&shape, &patch, c);
        let whole = Aggregator::new(AggregatorConfig::new(c, &shape, &patch)).unwrap();
        let mut cfg = AggregatorConfig::new(c, &shape, &patch);
        cfg.streaming = true;
        let stream = Aggregator::new(cfg).unwrap();
        let mut slabs = Vec::new();
        for (s, p) in &wins {
            whole.add(Prediction::F32(p.view()), s).unwrap();
            stream.add(Prediction::F32(p.view()), s).unwrap();
            slabs.extend(stream.pop_ready().unwrap());
        }
        stream.flush().unwrap();
        slabs.extend(stream.pop_ready().unwrap());
        let want = whole.finalize().unwrap();
        let mut next = 0;
        for slab in slabs {
            assert_eq!(slab.start, next);
            next = slab.stop;
            let SlabData::Logits(l) = slab.data else {
                panic!("logits expected")
            };
            assert_eq!(l, want.slice(s![.., slab.start..slab.stop, .., ..]).into_dyn());
        }
        assert_eq!(next, shape[0]);
        // out-of-order add
        let e = stream.add(Prediction::F32(wins[0].1.view()), &wins[0].0).unwrap_err();
        assert!(e.to_string().starts_with("start"));
    }

    #[test]
    fn uncovered_and_bad_input() {
        let agg = Aggregator::new(AggregatorConfig::new(2, &[10, 10, 10], &[4, 4, 4])).unwrap();
        let p = pred(2, &[4, 4, 4], 1);
        agg.add(Prediction::F32(p.view()), &[-2, 0, 8]).unwrap();
        let e = agg.finalize().unwrap_err();
        assert!(e.to_string().starts_with("uncovered"), "{e}");
        let e = agg.add(Prediction::F32(p.view()), &[10, 0, 0]).unwrap_err();
        assert!(e.to_string().starts_with("start"));
        let q = pred(3, &[4, 4, 4], 1);
        let e = agg.add(Prediction::F32(q.view()), &[0, 0, 0]).unwrap_err();
        assert!(e.to_string().starts_with("prediction"));
        let mut cfg = AggregatorConfig::new(2, &[10, 10, 10], &[4, 4, 4]);
        cfg.uncovered = Uncovered::Zero;
        let agg = Aggregator::new(cfg).unwrap();
        agg.add(Prediction::F32(p.view()), &[-2, 0, 8]).unwrap();
        let l = agg.finalize().unwrap();
        assert_eq!(l[[0, 5, 5, 5]], 0.0);
        assert!((l[[0, 0, 0, 8]] - p[[0, 2, 0, 0]]).abs() < 1e-6);
    }
}
