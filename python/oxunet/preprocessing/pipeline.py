"""One case through nnU-Net's DefaultPreprocessor steps (spec §8), for training and inference.

read → float32 → transpose_forward → crop to nonzero → new shape → normalize → resample
data and seg → class locations (training only) → seg as int8 (int16 when a label > 127).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from ..dataset import DatasetInfo, load_dataset_json
from ..dataset.dataset_json import DatasetJsonError
from .configuration import PreprocessingPlan
from .normalization import normalize
from ..errors import KernelError, PreprocessingError

if TYPE_CHECKING:
    from ..io import ImageIO

__all__ = ["ClassKey", "PreprocessingError", "class_location_keys", "compute_new_shape", "preprocess_case"]

ClassKey = Union[int, tuple[int, ...]]
PathLike = Union[str, os.PathLike]


def compute_new_shape(old_shape: Sequence[int], old_spacing: Sequence[float], new_spacing: Sequence[float]) -> list[int]:
    """nnU-Net's ``round(old_spacing / new_spacing * old_shape)`` per axis (Python's round)."""
    if not len(old_shape) == len(old_spacing) == len(new_spacing):
        raise ValueError(f"shape {tuple(old_shape)}, spacing {tuple(old_spacing)} and target {tuple(new_spacing)} differ in length")
    return [int(round(float(i) / float(j) * int(k))) for i, j, k in zip(old_spacing, new_spacing, old_shape)]


def _dataset_info(dataset: DatasetInfo | Mapping | PathLike) -> DatasetInfo:
    if isinstance(dataset, DatasetInfo):
        return dataset
    if isinstance(dataset, Mapping):
        labels = {
            str(k): tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else int(v)
            for k, v in dataset["labels"].items()
        }
        rco = dataset.get("regions_class_order")
        ignore = labels.get("ignore")
        if isinstance(ignore, tuple):  # as load_dataset_json refuses it
            raise DatasetJsonError(f"<dataset.json dict>: the ignore label must be a single integer, got {list(ignore)}")
        return DatasetInfo(
            path=Path("<dataset.json dict>"), channel_names=dict(dataset.get("channel_names", {})), labels=labels,
            num_training=int(dataset.get("numTraining", 0)), file_ending=str(dataset.get("file_ending", "")),
            regions_class_order=tuple(rco) if rco is not None else None, ignore_label=ignore,
        )
    return load_dataset_json(dataset)


def class_location_keys(dataset: DatasetInfo | Mapping | PathLike) -> list[ClassKey]:
    """The keys nnU-Net samples class locations for: foreground labels, or foreground regions
    (as declared, tuples kept), plus ``(-1, *all_labels)`` when there is an ignore label."""
    info = _dataset_info(dataset)
    if info.has_regions:
        keys: list[ClassKey] = []
        for name, v in info.labels.items():
            if name == "ignore" or v == 0 or (isinstance(v, tuple) and set(v) == {0}):
                continue
            keys.append(v)
    else:
        keys = list(info.foreground_labels)
    if info.ignore_label is not None:
        keys.append((-1, *info.all_labels))
    return keys


def _labels_as_int(seg: np.ndarray, case: str) -> np.ndarray:
    """The (float) label map as int8 (int16 when needed): the seg is resampled per label and -1
    must fit, so the smallest signed type holding the labels is also the fastest."""
    if seg.size == 0:
        return seg.astype(np.int8)
    lo, hi = seg.min(), seg.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise PreprocessingError(f"case {case}: the segmentation contains NaN or infinite values")
    if lo < 0 or hi > np.iinfo(np.int16).max:
        raise PreprocessingError(f"case {case}: segmentation values must lie in [0, 32767], found [{lo:g}, {hi:g}]")
    out = seg.astype(np.int8 if hi <= 127 else np.int16)
    if seg.dtype.kind == "f" and not np.array_equal(out, seg):  # compared chunk-wise, no float copy
        raise PreprocessingError(f"case {case}: the segmentation has non-integer values")
    return out


def _refuse_undeclared_labels(seg: np.ndarray, class_keys: Sequence[ClassKey], case: str) -> None:
    """A label no class declares would index past the network's outputs in the loss (a CUDA
    assert deep in training); refuse it here, naming the case."""
    declared = {0}
    for key in class_keys:
        declared.update(int(v) for v in (key if isinstance(key, tuple) else (key,)))
    present = np.unique(seg)
    undeclared = sorted(int(v) for v in present if int(v) not in declared)
    if undeclared:
        raise PreprocessingError(f"case {case}: label value(s) {undeclared[:10]} are not declared in dataset.json "
                                 f"(declared: {sorted(declared)})")


def _image_io(plan: PreprocessingPlan) -> ImageIO:
    from ..io import io_class_by_name

    io_cls = io_class_by_name(plan.image_reader_writer)
    if io_cls is None:
        raise PreprocessingError(f"plans: image_reader_writer {plan.image_reader_writer!r} is not supported by oxunet")
    return io_cls()


def _read(plan: PreprocessingPlan, image_files: Sequence[PathLike],
          seg: PathLike | np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, dict]:
    io = _image_io(plan)
    data, properties = io.read_images([str(f) for f in image_files])
    if isinstance(seg, np.ndarray):
        return data, seg, properties
    return data, io.read_seg(str(seg))[0] if seg is not None else None, properties


def _as_plan(plans: Mapping | PreprocessingPlan, configuration: str | None) -> PreprocessingPlan:
    if isinstance(plans, PreprocessingPlan):
        return plans
    if configuration is None:
        raise TypeError("preprocess_case: pass configuration= with a plans dict")
    return PreprocessingPlan.from_plans(plans, configuration)


def preprocess_case(
    images: Sequence[PathLike] | np.ndarray,
    seg: PathLike | np.ndarray | None,
    properties: dict | None,
    plans: Mapping | PreprocessingPlan,
    configuration: str | None = None,
    dataset: DatasetInfo | Mapping | PathLike | None = None,
    *,
    case: str = "<case>",
    class_keys: Sequence[ClassKey] | None = None,
    resample_data_fn=None,
    skip_seg: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Preprocesses one case as nnU-Net's ``DefaultPreprocessor.run_case`` / ``run_case_npy``.

    Parameters
    ----------
    images : the channel files of the case, or a ``(c, x, y, z)`` array as the reader returns it
        (the array is not modified).
    seg : the label file or a ``(1, x, y, z)`` array; None at inference.
    properties : the reader's properties (``spacing`` at least) when `images` is an array;
        ignored (read from the files) when `images` are files.
    plans, configuration : a plans dict (nnU-Net's format) and a configuration name, or a
        :class:`PreprocessingPlan` (configuration then unused).
    dataset : dataset.json (DatasetInfo, dict or path); needed with a seg, to know the classes
        whose locations are stored (or pass `class_keys`).
    case : the case id, used in error messages.
    resample_data_fn : ``fn(resampling, data, new_shape, current_spacing, new_spacing)`` in place
        of the Rust kernel for the image data (prediction on a GPU passes a torch one; it may
        return a torch tensor).
    skip_seg : without a seg, do not resample the nonzero map (prediction does not use it); the
        returned seg is then None.

    Returns
    -------
    data : float32 ``(c, *new_shape)``.
    seg : int8 ``(1, *new_shape)`` (int16 when a label is > 127); without a seg, the int8 map
        of the nonzero region (0 inside, -1 outside) at the new shape.
    properties : the reader's properties plus ``shape_before_cropping``,
        ``bbox_used_for_cropping``, ``shape_after_cropping_and_before_resampling`` and, with a
        seg, ``class_locations`` ``{key: int64 (k, 4) array}`` (rows ``(0, x, y, z)``).
    """
    plan = _as_plan(plans, configuration)
    has_seg = seg is not None
    if has_seg and class_keys is None:
        if dataset is None:
            raise TypeError("preprocess_case: a seg needs dataset= (dataset.json) or class_keys=")
        try:
            class_keys = class_location_keys(dataset)
        except DatasetJsonError as e:
            raise PreprocessingError(str(e)) from None

    seg_arr: np.ndarray | None
    if isinstance(images, np.ndarray):
        if properties is None or "spacing" not in properties:
            raise TypeError("preprocess_case: image arrays need properties with 'spacing'")
        data = images.astype(np.float32)  # a copy: normalization works in place
        properties = dict(properties)
        if isinstance(seg, np.ndarray):
            seg_arr = np.asarray(seg)
        elif seg is not None:
            seg_arr = _image_io(plan).read_seg(str(seg))[0]
        else:
            seg_arr = None
    else:
        if isinstance(images, (str, os.PathLike)):
            images = [images]  # a single-channel case given as one path
        data, seg_arr, properties = _read(plan, images, seg)
        data = data.astype(np.float32, copy=False)
    del seg

    if data.ndim != 4:
        raise PreprocessingError(f"case {case}: expected image data (c, x, y, z), got shape {data.shape}")
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(finite.size - finite.sum())
        raise PreprocessingError(f"case {case}: the images contain {bad} NaN/inf voxel(s); fix them (oxunet verify names them)")
    del finite
    if data.shape[0] != plan.num_channels:
        raise PreprocessingError(
            f"case {case}: {data.shape[0]} image channel(s), but the plans normalize {plan.num_channels}"
        )
    if seg_arr is not None:
        if seg_arr.ndim == 3:
            seg_arr = seg_arr[None]
        if seg_arr.shape[1:] != data.shape[1:] or seg_arr.shape[0] != 1:
            raise PreprocessingError(
                f"case {case}: segmentation shape {seg_arr.shape[1:]} does not match the image shape {data.shape[1:]}"
            )
        seg_arr = _labels_as_int(seg_arr, case)
        if has_seg and class_keys:
            _refuse_undeclared_labels(seg_arr, class_keys, case)
    if len(properties["spacing"]) != 3:
        raise PreprocessingError(f"case {case}: expected 3 spacing values, got {properties['spacing']}")

    axes = [0, *(i + 1 for i in plan.transpose_forward)]
    data = data.transpose(axes)
    if seg_arr is not None:
        seg_arr = seg_arr.transpose(axes)
    original_spacing = [float(properties["spacing"][i]) for i in plan.transpose_forward]

    from ..kernels import crop_to_nonzero, sample_class_locations

    properties["shape_before_cropping"] = [int(s) for s in data.shape[1:]]
    data, seg_arr, bbox = crop_to_nonzero(data, seg_arr)  # without a seg: the nonzero map (0 / -1)
    properties["bbox_used_for_cropping"] = bbox
    properties["shape_after_cropping_and_before_resampling"] = [int(s) for s in data.shape[1:]]

    target_spacing = plan.target_spacing(original_spacing)
    new_shape = compute_new_shape(data.shape[1:], original_spacing, target_spacing)
    # before resampling, so that the nonzero mask (seg >= 0) still fits the image exactly
    data = normalize(data, seg_arr, plan.normalization_schemes, plan.use_mask_for_norm, plan.intensity_properties)

    try:
        if resample_data_fn is not None and plan.resampling_data.fn != "no_resampling_hack":
            data = resample_data_fn(plan.resampling_data, data, new_shape, original_spacing, target_spacing)
        else:
            data = plan.resampling_data.apply(data, new_shape, original_spacing, target_spacing, is_seg=False)
        if not (skip_seg and not has_seg):
            seg_arr = plan.resampling_seg.apply(seg_arr, new_shape, original_spacing, target_spacing, is_seg=True)
    except KernelError as e:  # e.g. a wrong spacing header asking for a huge volume: name the case
        raise PreprocessingError(
            f"case {case}: resampling from spacing {tuple(original_spacing)} to {tuple(target_spacing)} "
            f"(shape {tuple(new_shape)}) failed: {e}") from None
    if isinstance(data, np.ndarray) and not np.isfinite(data).all():
        raise PreprocessingError(f"case {case}: the preprocessed image has non-finite values; it is not written")
    if skip_seg and not has_seg:
        return data, None, properties

    if has_seg:
        properties["class_locations"] = sample_class_locations(seg_arr, list(class_keys or ()), seed=1234)  # keys are set with a seg
    if seg_arr.dtype != np.int8 and seg_arr.size and int(seg_arr.max()) <= 127:
        seg_arr = seg_arr.astype(np.int8)
    return data, seg_arr, properties
