"""Logits in network space → segmentation (and probabilities) in the input's geometry (spec §14.3).

Per case: resample the logits to ``shape_after_cropping_and_before_resampling`` with the plan's
``resampling_fn_probabilities`` (current spacing = plan spacing, 2D prefixed by the case's own
axis-0 spacing; new spacing = the case's spacing), then argmax (labels) or sigmoid > 0.5 painted
in ``regions_class_order`` (regions), un-crop into ``shape_before_cropping``, transpose back and
write with the plan's reader/writer. Probabilities: softmax / sigmoid (float32) of the resampled
logits, un-cropped with background 1 outside the crop (label mode), axes ``(C, *input order)``.

Memory: never a float64 copy. Without probabilities the logits are resampled a few channels at a
time with a running argmax, so peak memory is the network-space logits plus a few full-resolution
channels. :class:`StreamingExport` goes further (see there): it consumes the aggregator's
finished slabs, so the full network-space logits never exist.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import DatasetInfo
from ..kernels import resample_data
from ..kernels.resampling import band_dependencies, resample_data_band, separate_z_axis
from ..planning.plans import resolve_configuration
from ..preprocessing.configuration import Resampling

__all__ = ["ExportPlan", "StreamingExport", "export_logits", "load_properties", "save_probabilities", "streaming_exact",
           "streaming_exact_nearest", "write_segmentation"]

CHUNK_BYTES = 256 << 20  # full-resolution float32 channels resampled at once on the label path
SLAB_CHUNK_BYTES = 64 << 20  # the same within one streamed slab


@dataclass(frozen=True)
class ExportPlan:
    """What export needs from plans + configuration + dataset.json."""

    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    spacing: tuple[float, ...]
    resampling: Resampling
    has_regions: bool
    regions_class_order: tuple[int, ...] | None
    num_heads: int
    seg_dtype: Any
    image_reader_writer: str
    file_ending: str

    @classmethod
    def from_plans(cls, plans, configuration: str, dataset: DatasetInfo) -> ExportPlan:
        """From the plans: a typed :class:`~oxunet.planning.model.Plans` (fields read as parsed) or the dict."""
        if hasattr(plans, "configuration") and hasattr(plans, "transpose_forward"):
            cfg = plans.configuration(configuration)
            tf, tb, spacing = tuple(plans.transpose_forward), tuple(plans.transpose_backward), cfg.spacing
            res = Resampling.from_plans(cfg.resampling_fn_probabilities, dict(cfg.resampling_fn_probabilities_kwargs),
                                        "probabilities")
            reader = plans.image_reader_writer
        else:
            cfg = resolve_configuration(plans, configuration)
            tf = tuple(int(i) for i in plans["transpose_forward"])
            tb = tuple(int(i) for i in plans.get("transpose_backward", np.argsort(tf)))
            spacing = tuple(float(s) for s in cfg["spacing"])
            res = Resampling.from_plans(cfg.get("resampling_fn_probabilities", "resample_data_or_seg_to_shape"),
                                        cfg.get("resampling_fn_probabilities_kwargs"), "probabilities")
            reader = plans.get("image_reader_writer", "SimpleITKIO")
        return cls(tf, tb, spacing, res, dataset.has_regions,
                   dataset.regions_class_order, dataset.num_segmentation_heads,
                   np.uint8 if len(dataset.foreground_labels) < 255 else np.uint16,
                   str(dataset.image_reader_writer or reader), dataset.file_ending)

    @property
    def region_order(self) -> tuple[int, ...]:
        """``regions_class_order`` of a region-based dataset (dataset.json must give it there)."""
        if self.regions_class_order is None:
            raise ValueError("dataset.json: regions need a regions_class_order")
        return self.regions_class_order

    def spacings(self, properties: dict) -> tuple[list[float], list[float]]:
        """(current, new) spacing of the export resampling for a case."""
        new = [float(properties["spacing"][i]) for i in self.transpose_forward]
        current = list(self.spacing) if len(self.spacing) == 3 else [new[0], *self.spacing]
        return current, new

    def io(self):
        from ..io import io_class_by_name

        cls = io_class_by_name(self.image_reader_writer)
        if cls is None:
            raise ValueError(f"plans: image_reader_writer {self.image_reader_writer!r} is not supported by oxunet")
        return cls()


# --------------------------------------------------------------------------------------------
# helpers


def _torch_or_none():
    """torch where installed (its casts and softmax are vectorised and threaded), else None:
    ONNX-runtime prediction runs without torch, on numpy's slower equivalents."""
    from .runtime import torch_available

    if not torch_available():
        return None
    import torch

    return torch


def _softmax_np(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max(0, keepdims=True))
    e /= e.sum(0, keepdims=True)
    return e


def _sigmoid_np(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float32)
    with np.errstate(over="ignore"):  # exp(-x) -> inf gives the exact limit 0
        return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32, copy=False)


def cast_into(src: np.ndarray, dst: np.ndarray) -> None:
    """``dst[...] = src`` with a dtype change (float32 ↔ float16) through torch, whose casts are
    vectorised and threaded (numpy's float16 conversion is ~10x slower). `src` may be strided."""
    torch = _torch_or_none()
    if torch is None:  # ONNX-runtime prediction without torch installed
        np.copyto(dst, src, casting="unsafe")
        return
    torch.from_numpy(dst).copy_(torch.from_numpy(src))


def as_dtype(src: np.ndarray, dtype) -> np.ndarray:
    if src.dtype == np.dtype(dtype):
        return src
    out = np.empty(src.shape, dtype)
    cast_into(src, out)
    return out


class Scratch:
    """Work buffers kept between slabs. Large fresh allocations go back to the OS when freed, so
    every new one pays its page faults again (dearly on virtual machines); same-shaped buffers are
    reused instead."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, key: str, shape, dtype) -> np.ndarray:
        a = self._bufs.get(key)
        if a is None or a.shape != tuple(shape) or a.dtype != np.dtype(dtype):
            a = self._bufs[key] = np.empty(tuple(int(s) for s in shape), dtype)
        return a


def take_planes(slab: np.ndarray, channels: slice, pick, dtype, scratch: Scratch | None = None) -> np.ndarray:
    """``slab[channels][:, pick]`` as a contiguous array of `dtype`: the selected channels and
    axis-1 planes (`pick`: an index array, or a slice) gathered and cast in one torch copy
    (into a `scratch` buffer when given)."""
    torch = _torch_or_none()
    if torch is None:
        picked = slab[channels][:, pick]
        out_np = scratch.get("planes", picked.shape, dtype) if scratch is not None else np.empty(picked.shape, dtype)
        np.copyto(out_np, picked, casting="unsafe")
        return out_np
    if not isinstance(pick, slice):
        pick = torch.from_numpy(np.asarray(pick, dtype=np.int64))
    src = torch.from_numpy(slab[channels])[:, pick]
    out = scratch.get("planes", src.shape, dtype) if scratch is not None else np.empty(tuple(src.shape), dtype)
    torch.from_numpy(out).copy_(src)
    return out


def _resample(ep: ExportPlan, logits: np.ndarray, target, cs, ns) -> np.ndarray:
    if ep.resampling.fn == "no_resampling_hack" or tuple(logits.shape[1:]) == tuple(target):
        return logits
    return resample_data(logits, target, cs, ns, order=ep.resampling.order, order_z=ep.resampling.order_z,
                         force_separate_z=ep.resampling.force_separate_z)


def _nonlin(ep: ExportPlan, logits: np.ndarray) -> np.ndarray:
    """softmax over channels / sigmoid, float32 (torch, as nnU-Net's label manager)."""
    torch = _torch_or_none()
    if torch is None:
        return _sigmoid_np(logits) if ep.has_regions else _softmax_np(logits)
    t = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    with torch.no_grad():
        out = torch.sigmoid(t) if ep.has_regions else torch.softmax(t, 0)
    return out.numpy()


def _labels_from_probabilities(ep: ExportPlan, probs: np.ndarray) -> np.ndarray:
    if ep.has_regions:
        seg = np.zeros(probs.shape[1:], np.uint16)
        for i, c in enumerate(ep.region_order):
            seg[probs[i] > 0.5] = c
        return seg
    return probs.argmax(0)


class _RunningLabels:
    """argmax over channels fed a few channels at a time (first maximum wins, as np.argmax), or
    region painting (sigmoid > 0.5, later regions overwrite). Writes into `out` when given (a
    zeroed label array of `shape`); `scratch` lends the float32 work buffers."""

    def __init__(self, ep: ExportPlan, shape, out: np.ndarray | None = None, scratch: Scratch | None = None,
                 entropy=None):
        self.ep = ep
        self.entropy = entropy  # an uncertainty.RunningEntropy fed the same chunks (--save-uncertainty)
        dtype = _label_dtype(ep)
        self.seg = np.zeros(shape, dtype) if out is None else out
        self.scratch = scratch if scratch is not None else Scratch()
        self.best: np.ndarray | None = None

    def feed(self, first: int, chunk: np.ndarray) -> None:
        if self.ep.has_regions:
            if self.entropy is not None:
                self.entropy.feed(first, chunk)
            for k in range(chunk.shape[0]):
                p = _nonlin(self.ep, chunk[k])
                self.seg[p > 0.5] = self.ep.region_order[first + k]
            return
        start = 0
        # float32 even for float16 logits: exact, and numpy compares float16 ~30x slower
        if chunk.dtype != np.float32:
            buf = self.scratch.get("chunk32", chunk.shape, np.float32)
            cast_into(chunk, buf)
            chunk = buf
        if self.entropy is not None:
            self.entropy.feed(first, chunk)
        best = self.best
        if best is None:
            best = self.best = self.scratch.get("best", chunk.shape[1:], np.float32)
            best[...] = chunk[0]
            start = 1
        for k in range(start, chunk.shape[0]):
            value = chunk[k]
            better = value > best
            self.seg[better] = first + k
            np.maximum(best, value, out=best)


def _uncrop(ep: ExportPlan, seg_cropped: np.ndarray, properties: dict) -> np.ndarray:
    full = np.zeros(properties["shape_before_cropping"], dtype=ep.seg_dtype)
    bbox = properties["bbox_used_for_cropping"]
    full[tuple(slice(int(a), int(b)) for a, b in bbox)] = seg_cropped
    return full.transpose(ep.transpose_backward)


def _uncrop_map(ep: ExportPlan, values: np.ndarray, properties: dict) -> np.ndarray:
    """A float32 map of the cropped region into the input's geometry (0 outside the crop)."""
    full = np.zeros(properties["shape_before_cropping"], dtype=np.float32)
    bbox = properties["bbox_used_for_cropping"]
    full[tuple(slice(int(a), int(b)) for a, b in bbox)] = values
    return full.transpose(ep.transpose_backward)


def _inside_crop(bbox, z0: int, z1: int) -> tuple[slice, ...]:
    """Index of cropped planes [z0, z1) (all channels) inside the uncropped ``(C, *shape)`` array."""
    (a0, _), rest = bbox[0], bbox[1:]
    return (slice(None), slice(int(a0) + z0, int(a0) + z1), *(slice(int(a), int(b)) for a, b in rest))


def _uncrop_probabilities(ep: ExportPlan, probs: np.ndarray, properties: dict, dtype, spill_dir=None) -> np.ndarray:
    shape = (probs.shape[0], *properties["shape_before_cropping"])
    out = _big_array(spill_dir, shape, dtype)
    if not ep.has_regions:
        out[0] = 1
    bbox = properties["bbox_used_for_cropping"]
    if spill_dir is None:
        out[_inside_crop(bbox, 0, probs.shape[1])] = probs
    else:  # a band of planes at a time, each written back and dropped from the RSS
        band = max(1, SLAB_CHUNK_BYTES // max(1, probs[:, :1].nbytes))
        for b0 in range(0, probs.shape[1], band):
            b1 = min(probs.shape[1], b0 + band)
            out[_inside_crop(bbox, b0, b1)] = probs[:, b0:b1]
            _release(out)
            _release(probs)
    return out.transpose([0, *(i + 1 for i in ep.transpose_backward)])


# --------------------------------------------------------------------------------------------
# whole-volume export


def export_logits(ep: ExportPlan, logits: np.ndarray, properties: dict, *, return_probabilities: bool = False,
                  probabilities_dtype=np.float32, uncertainty: dict | None = None,
                  spill_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Segmentation (input axis order, ``shape_before_cropping`` transposed back) and, if asked,
    probabilities ``(C, *input order)`` from network-space logits ``(C, *shape)`` (float16/32).
    With `spill_dir` the resampled logits and the probabilities live in disk-backed arrays there
    (unlinked temporary files; the probabilities come back as an ``np.memmap``), filled a few
    channels / planes at a time, so the RSS stays bounded; same values as without.
    With an `uncertainty` dict, its ``"entropy"`` receives the normalised entropy map (input geometry)."""
    from .uncertainty import RunningEntropy

    target = [int(s) for s in properties["shape_after_cropping_and_before_resampling"]]
    cs, ns = ep.spacings(properties)
    if return_probabilities:
        return _export_probabilities_banded(ep, logits, properties, target, cs, ns, probabilities_dtype,
                                             uncertainty, spill_dir)
    per_channel = int(np.prod(target)) * 4
    step = max(1, CHUNK_BYTES // max(per_channel, 1))
    ent = RunningEntropy(target, ep.num_heads, ep.has_regions) if uncertainty is not None else None
    run = _RunningLabels(ep, target, entropy=ent)
    for c0 in range(0, logits.shape[0], step):
        run.feed(c0, _resample(ep, logits[c0:c0 + step], target, cs, ns))
    if ent is not None and uncertainty is not None:  # ent exists exactly when uncertainty is asked for
        uncertainty["entropy"] = _uncrop_map(ep, ent.finish(), properties)
    return _uncrop(ep, run.seg, properties), None


def _label_dtype(ep: ExportPlan):
    """The network-space label map's dtype: uint8 unless regions or more than 256 heads need uint16."""
    return np.uint16 if ep.has_regions else (np.uint8 if ep.num_heads <= 256 else np.uint16)


def _big_array(spill_dir, shape, dtype) -> np.ndarray:
    """np.zeros, or with a `spill_dir` :func:`_spill_array`."""
    return np.zeros(shape, dtype) if spill_dir is None else _spill_array(spill_dir, shape, dtype)


def _spill_array(spill_dir, shape, dtype) -> np.ndarray:
    """A zero-filled disk-backed array in `spill_dir` whose file is already unlinked (the mapping
    keeps it alive; nothing is left behind whatever happens)."""
    import tempfile

    f = tempfile.TemporaryFile(dir=spill_dir, prefix=".oxunet-spill-")
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    f.truncate(max(nbytes, 1))
    arr = np.memmap(f, dtype=dtype, mode="r+", shape=tuple(int(s) for s in shape))
    f.close()  # the mmap holds its own reference to the file
    return arr


def _release(arr: np.ndarray) -> None:
    """Writes a disk-backed array's dirty pages back and drops them from this process (they stay
    in the page cache, out of the RSS); nothing for an in-memory array."""
    mm = getattr(arr, "_mmap", None)
    if mm is None:
        return
    import mmap

    arr.flush()  # type: ignore[attr-defined]  # only memmaps (they have _mmap) get here
    if hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def _export_probabilities_banded(ep: ExportPlan, logits, properties, target, cs, ns, probabilities_dtype,
                                 uncertainty, spill_dir):
    """:func:`export_logits` with probabilities: resample a few channels at a time into a float32
    array (resampling is per channel), then softmax / sigmoid, labels and the probabilities' copy
    into the uncropped output band of planes by band. With `spill_dir` both big arrays are
    disk-backed (bounded RSS); the bands are the same either way, so are the bytes."""
    from .uncertainty import entropy_from_probabilities

    nc = logits.shape[0]
    res = _big_array(spill_dir, (nc, *target), np.float32)
    per_channel = int(np.prod(target)) * 4
    step = max(1, CHUNK_BYTES // max(per_channel, 1))
    for c0 in range(0, nc, step):
        res[c0:c0 + step] = _resample(ep, logits[c0:c0 + step], target, cs, ns)
        _release(res)
    full = _big_array(spill_dir, (nc, *properties["shape_before_cropping"]), probabilities_dtype)
    if not ep.has_regions:
        full[0] = 1
        _release(full)
    bbox = [(int(a), int(b)) for a, b in properties["bbox_used_for_cropping"]]
    seg = np.zeros(target, _label_dtype(ep))
    ent = np.zeros(target, np.float32) if uncertainty is not None else None
    plane = nc * int(np.prod(target[1:])) * 4
    band = max(1, SLAB_CHUNK_BYTES // max(plane, 1))
    for z0 in range(0, target[0], band):
        z1 = min(target[0], z0 + band)
        p = _nonlin(ep, np.asarray(res[:, z0:z1]))
        seg[z0:z1] = _labels_from_probabilities(ep, p)
        if ent is not None:
            ent[z0:z1] = entropy_from_probabilities(p, ep.has_regions)
        full[_inside_crop(bbox, z0, z1)] = p
        del p
        _release(full)
        _release(res)
    del res
    if ent is not None:
        uncertainty["entropy"] = _uncrop_map(ep, ent, properties)
    return _uncrop(ep, seg, properties), full.transpose([0, *(i + 1 for i in ep.transpose_backward)])


# --------------------------------------------------------------------------------------------
# streaming export


def streaming_dependencies(ep: ExportPlan, properties: dict, net_shape) -> tuple[np.ndarray | None, str]:
    """Per output plane along axis 0 of the export resampling, the first and last network-space
    plane it reads, when resampling bands of planes gives exactly the whole-volume result
    (:func:`oxunet.kernels.resampling.band_dependencies`); else ``(None, why)``."""
    depth = int(net_shape[0])
    if ep.resampling.fn == "no_resampling_hack":
        o = np.arange(depth, dtype=np.int64)
        return np.stack([o, o], axis=1), "no resampling"
    target = [int(s) for s in properties["shape_after_cropping_and_before_resampling"]]
    cs, ns = ep.spacings(properties)
    r = ep.resampling
    deps, why = band_dependencies([int(s) for s in net_shape], target, cs, ns, r.order, r.order_z,
                                  r.force_separate_z)
    if deps is None:
        return None, why
    sep = separate_z_axis(cs, ns, r.force_separate_z)
    if target[0] == depth:
        return deps, "axis 0 keeps its size"
    along = f"order_z {r.order_z}" if sep == 0 else f"order {r.order}"
    return deps, f"bands of planes along axis 0 with their {along} halo"


def streaming_exact(ep: ExportPlan, properties: dict, net_shape) -> tuple[bool, str]:
    """Whether the export can be computed slab by slab exactly as the whole volume (and why
    (not)): wherever every resampling pass across axis 0 is local (order 0 or 1) and every clip
    is per slice along axis 0 or a no-op. Not for order 3 across axis 0 or clipped over whole
    channels: its B-spline prefilter and the clip span the whole volume."""
    deps, why = streaming_dependencies(ep, properties, net_shape)
    return deps is not None, why


def streaming_exact_nearest(ep: ExportPlan, properties: dict, net_shape) -> tuple[bool, str]:
    """The narrower rule of the device export (torch resampling, no band kernel): exact when axis
    0 keeps its size (order <= 1, or the separately resampled axis), or is the separately
    resampled axis with nearest interpolation (order_z 0): every output plane is the in-plane
    resize of one input plane."""
    if ep.resampling.fn == "no_resampling_hack":
        return True, "no resampling"
    target = [int(s) for s in properties["shape_after_cropping_and_before_resampling"]]
    cs, ns = ep.spacings(properties)
    sep = separate_z_axis(cs, ns, ep.resampling.force_separate_z)
    if target[0] == int(net_shape[0]):
        if ep.resampling.order <= 1 or sep == 0:
            return True, "axis 0 keeps its size"
        return False, f"order {ep.resampling.order} clipping is per channel over the whole volume"
    if sep == 0 and ep.resampling.order_z == 0:
        return True, "axis 0 resampled separately with nearest neighbour"
    if sep == 0:
        return False, f"axis 0 interpolated with order_z {ep.resampling.order_z} across slab borders"
    return False, "axis 0 changes size and is interpolated jointly with the others (not separable by slabs)"


def _axis0_source(ep: ExportPlan, net_depth: int, target_depth: int, cs, ns) -> np.ndarray:
    """For each output plane along axis 0, the input plane it is copied from, read off the
    resampling kernel itself (a ramp of plane indices through the same separate-z path)."""
    ramp = np.broadcast_to(np.arange(net_depth, dtype=np.float32)[None, :, None, None], (1, net_depth, 2, 2))
    out = resample_data(np.ascontiguousarray(ramp), [target_depth, 2, 2], cs, ns, order=ep.resampling.order,
                        order_z=0, force_separate_z=ep.resampling.force_separate_z)
    src = out[0, :, 0, 0]
    idx = np.rint(src).astype(np.int64)
    if not np.array_equal(idx.astype(np.float32), src) or np.any(np.diff(idx) < 0):
        raise RuntimeError("streaming export: the axis-0 mapping is not a monotone nearest-neighbour copy")
    return idx


class StreamingExport:
    """Consumes the aggregator's finished slabs ``(x0, x1, float32 logits (C, d, Y, X))`` in
    order and builds the cropped segmentation (and probabilities) band by band; see
    :func:`streaming_exact`.

    An output plane along axis 0 is produced as soon as every network-space plane it reads has
    arrived (:func:`streaming_dependencies`: one plane for nearest, two for linear
    interpolation); the planes later outputs still need are kept as a halo. Bands are resampled
    with :func:`oxunet.kernels.resampling.resample_data_band`, so the labels equal the
    whole-volume export's bit for bit.

    Peak memory: the output segmentation, a slab of logits plus its halo, and the resampled
    copy of at most ``SLAB_CHUNK_BYTES`` of output planes at a time (plus the probabilities,
    disk-backed with `spill_dir`).
    """

    def __init__(self, ep: ExportPlan, properties: dict, net_shape, *, logits_dtype=np.float32,
                 return_probabilities: bool = False, probabilities_dtype=np.float32, times=None,
                 uncertainty: bool = False, spill_dir: str | os.PathLike | None = None):
        deps, why = streaming_dependencies(ep, properties, net_shape)
        if deps is None:
            raise ValueError(f"streaming export is not exact for this case: {why}")
        self.deps = deps
        self.ep, self.properties, self.times = ep, properties, times
        self.net_shape = tuple(int(s) for s in net_shape)
        self.target = [int(s) for s in properties["shape_after_cropping_and_before_resampling"]]
        self.cs, self.ns = ep.spacings(properties)
        self.logits_dtype = logits_dtype
        self.seg = np.zeros(self.target, _label_dtype(ep))
        self.spill_dir = spill_dir
        pshape = (ep.num_heads, *self.target)
        if not return_probabilities:
            self.probs = None
        elif spill_dir is None:
            self.probs = np.zeros(pshape, probabilities_dtype)
        else:  # disk-backed: the probabilities never sit in memory as a whole
            self.probs = _spill_array(spill_dir, pshape, probabilities_dtype)  # (streamed: never whole)
        self.entropy = np.zeros(self.target, np.float32) if uncertainty else None
        self.uncertainty: dict | None = None
        self.scratch = Scratch()
        self.identity = ep.resampling.fn == "no_resampling_hack" or list(self.net_shape) == self.target
        self.halo: np.ndarray | None = None  # network-space planes [halo0, next_in) later outputs still read
        self.halo0 = 0
        self.next_in = 0  # the first network-space plane not yet received
        self.next_out = 0  # the first output plane not yet produced

    def __call__(self, slabs) -> None:
        if self.times is not None:
            with self.times.stage("export"):
                self._consume(slabs)
        else:
            self._consume(slabs)

    def _consume(self, slabs) -> None:
        for x0, x1, slab in slabs:
            if x0 != self.next_in:
                raise RuntimeError(f"streaming export: slab {x0}..{x1} arrived, expected plane {self.next_in} next")
            # outputs whose last input plane has arrived
            o_end = int(np.searchsorted(self.deps[:, 1], x1, side="left"))
            o_end = max(o_end, self.next_out)
            if o_end > self.next_out:
                self._emit(slab, x0, self.next_out, o_end)
            self.next_out = o_end
            self.next_in = x1
            self._keep_halo(slab, x0, x1)

    def _keep_halo(self, slab, x0: int, x1: int) -> None:
        if self.next_out >= self.target[0]:
            self.halo = None
            return
        need = int(self.deps[self.next_out:, 0].min())
        if need >= x1:
            self.halo = None
            self.halo0 = x1
            return
        parts = []
        if self.halo is not None and need < x0:
            parts.append(self.halo[:, need - self.halo0:])
        parts.append(slab[:, max(need, x0) - x0:])
        if len(parts) > 1:  # concatenate makes a new array already
            self.halo = np.concatenate(parts, axis=1).astype(self.logits_dtype, copy=False)
        else:  # a copy: the aggregator reuses its slab memory
            self.halo = np.array(parts[0], dtype=self.logits_dtype, copy=True)
        self.halo0 = need

    def _planes(self, slab, x0: int, channels: slice, lo: int, hi: int) -> np.ndarray:
        """Network-space planes [lo, hi) of `channels` from the halo and the slab, in logits dtype."""
        if lo >= x0:
            return take_planes(slab, channels, slice(lo - x0, hi - x0), self.logits_dtype, self.scratch)
        assert self.halo is not None and lo >= self.halo0, "streaming export: a plane left the halo too early"
        parts = [self.halo[channels, lo - self.halo0:min(hi, x0) - self.halo0]]
        if hi > x0:
            parts.append(np.asarray(slab[channels, :hi - x0], dtype=self.logits_dtype))
        return np.concatenate(parts, axis=1) if len(parts) > 1 else np.ascontiguousarray(parts[0])

    def _resample_band(self, planes: np.ndarray, lo: int, o0: int, o1: int) -> np.ndarray:
        if self.identity:
            return planes
        r = self.ep.resampling
        return resample_data_band(planes, lo, self.net_shape[0], (o0, o1), self.target, self.cs, self.ns,
                                  r.order, r.order_z, r.force_separate_z)

    def _emit(self, slab, x0: int, o_first: int, o_last: int) -> None:
        plane = int(np.prod(self.target[1:])) * 4
        nc = slab.shape[0]
        # output planes per band: the resampled copy of every channel (probabilities) or of one
        # channel (labels) stays within SLAB_CHUNK_BYTES
        per = max(1, SLAB_CHUNK_BYTES // max(1, plane * (nc if self.probs is not None else 1)))
        for o0 in range(o_first, o_last, per):
            o1 = min(o_last, o0 + per)
            lo, hi = int(self.deps[o0:o1, 0].min()), int(self.deps[o0:o1, 1].max()) + 1
            shape = [o1 - o0, *self.target[1:]]
            if self.probs is not None:  # softmax needs every channel at once
                res = self._resample_band(self._planes(slab, x0, slice(None), lo, hi), lo, o0, o1)
                p = _nonlin(self.ep, res)
                self.probs[:, o0:o1] = p
                _release(self.probs)
                self.seg[o0:o1] = _labels_from_probabilities(self.ep, p)
                if self.entropy is not None:
                    from .uncertainty import entropy_from_probabilities

                    self.entropy[o0:o1] = entropy_from_probabilities(p, self.ep.has_regions)
                continue
            # labels: a few channels at a time, so the resampled copy stays small
            step = max(1, SLAB_CHUNK_BYTES // max(1, int(np.prod(shape)) * 4))
            out = self.seg[o0:o1]
            out.fill(0)
            ent = None
            if self.entropy is not None:
                from .uncertainty import RunningEntropy

                ent = RunningEntropy(shape, self.ep.num_heads, self.ep.has_regions, out=self.entropy[o0:o1])
            run = _RunningLabels(self.ep, shape, out=out, scratch=self.scratch, entropy=ent)
            for c0 in range(0, nc, step):
                part = self._planes(slab, x0, slice(c0, c0 + step), lo, hi)
                run.feed(c0, self._resample_band(part, lo, o0, o1))
            if ent is not None:
                ent.finish()

    def result(self, probabilities_dtype=np.float32) -> tuple[np.ndarray, np.ndarray | None]:
        if self.next_out != self.target[0]:
            raise RuntimeError(f"streaming export: {self.next_out} of {self.target[0]} output planes were produced "
                               f"(slabs up to plane {self.next_in} of {self.net_shape[0]} arrived)")
        self.halo = None
        seg = _uncrop(self.ep, self.seg, self.properties)
        if self.entropy is not None:
            self.uncertainty = {"entropy": _uncrop_map(self.ep, self.entropy, self.properties)}
            self.entropy = None
        probs = None
        if self.probs is not None:
            probs = _uncrop_probabilities(self.ep, self.probs, self.properties, probabilities_dtype, self.spill_dir)
            self.probs = None
        return seg, probs


# --------------------------------------------------------------------------------------------
# writing


def write_segmentation(ep: ExportPlan, seg: np.ndarray, path: str | os.PathLike, properties: dict) -> None:
    """Writes with the plan's reader/writer (atomically: the writers go through io.atomic_path)."""
    ep.io().write_seg(np.ascontiguousarray(seg), str(path), properties)


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_probabilities(probabilities: np.ndarray, properties: dict, stem: str | os.PathLike) -> tuple[Path, Path]:
    """``{stem}.npz`` (key ``probabilities``, compressed, as nnU-Net) and ``{stem}.json`` (the
    properties; nnU-Net writes a ``.pkl``), both atomically."""
    from ..io import atomic_path

    stem = Path(stem)
    npz, js = stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")
    with atomic_path(npz) as tmp:
        _savez_compressed_banded(tmp, "probabilities", probabilities)
    props = {k: v for k, v in properties.items() if k != "class_locations"}
    with atomic_path(js) as tmp:
        tmp.write_text(json.dumps({"format": "oxunet-properties", "version": 1, **props}, indent=1,
                                  default=_json_default))
    return npz, js


def _savez_compressed_banded(path, key: str, arr: np.ndarray) -> None:
    """``np.savez_compressed(path, key=arr)`` (same file format, a faster deflate level), written
    a band of planes per channel at a time: a disk-backed (memmap) `arr`, possibly a transposed
    view, is never resident as a whole (each band's pages are dropped once written)."""
    import zipfile

    from numpy.lib import format as npy

    header = {"descr": npy.dtype_to_descr(arr.dtype), "fortran_order": False, "shape": tuple(arr.shape)}
    # deflate level 1: 4x the speed of numpy's default level 6 on probabilities (50 vs 12.5 MB/s,
    # 51-class CT) for a 1.6% larger file; any reader of .npz (np.load, nnU-Net) takes either
    with zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=1,
                         allowZip64=True) as zf:
        with zf.open(key + ".npy", mode="w", force_zip64=True) as out:
            if _needs_npy_v2(header):
                npy.write_array_header_2_0(out, header)
            else:
                npy.write_array_header_1_0(out, header)
            if arr.ndim < 2 or arr.size == 0:
                out.write(np.ascontiguousarray(arr).tobytes())
                return
            plane = max(1, int(np.prod(arr.shape[2:])) * arr.itemsize)
            band = max(1, SLAB_CHUNK_BYTES // plane)
            for c in range(arr.shape[0]):
                for b0 in range(0, arr.shape[1], band):
                    out.write(np.ascontiguousarray(arr[c, b0:b0 + band]).data.cast("B"))
                    _release(arr)


def _needs_npy_v2(header: dict) -> bool:
    """Whether the .npy header is too long for format 1.0 (as numpy decides)."""
    return len(repr(header)) + 12 > 65535


def load_properties(path: str | os.PathLike) -> dict:
    """Properties saved next to probabilities: ours (``{case}.json``) or nnU-Net's (``{case}.pkl``,
    read with a restricted unpickler: builtins and numpy types only). `path` may also be the
    ``.npz`` or the case stem; JSON is preferred when both exist."""
    p = Path(path)
    name = p.name
    for suffix in (".npz", ".json", ".pkl"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    stem = p.with_name(name)
    js, pkl = stem.with_name(name + ".json"), stem.with_name(name + ".pkl")
    if js.is_file():
        out = json.loads(js.read_text())
        out.pop("format", None)
        out.pop("version", None)
        return out
    if pkl.is_file():
        from ..io.pickles import load_restricted_pickle

        return dict(load_restricted_pickle(pkl))
    raise FileNotFoundError(f"{stem}: no {name}.json or {name}.pkl properties file")
