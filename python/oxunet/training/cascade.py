"""The cascade's hand-over between stages (spec §13/§14, nnU-Net 2.8.1).

``3d_lowres``'s final validation resamples each validation case's logits to the next stage's
preprocessed shape and saves the arg-maxed segmentation (nnU-Net's ``resample_and_save``) to

    <results>/<dataset>/<trainer>__<plans>__3d_lowres/predicted_next_stage/3d_cascade_fullres/<case>.npz

(key ``seg``, spatial shape only, uint8 / uint16 — nnU-Net's numpy dataset format; nnU-Net's default
``.b2nd`` files are read as well). ``3d_cascade_fullres`` reads them as extra one-hot input channels
(foreground labels), cropped with the data's patch box and padded with -1 as nnU-Net's loader does.
Every fold writes its own validation cases, so all folds of the previous stage must be trained
before any fold of the cascade.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..dataset import DatasetInfo
from ..io import atomic_path
from ..kernels import resample_data
from ..planning import resolve_configuration
from ..preprocessing.configuration import Resampling
from ..errors import TrainingError

PREDICTED_NEXT_STAGE = "predicted_next_stage"


class CascadeError(TrainingError):
    """A previous-stage segmentation is missing or does not fit; the message names the case and the fix."""


def next_stage_names(plans: dict, configuration: str) -> list[str]:
    """Configurations fed by ``configuration``: its ``next_stage`` (str or list, nnU-Net's
    ``next_stage_names``) plus every configuration whose ``previous_stage`` names it, in plan order."""
    cfg = resolve_configuration(plans, configuration)
    declared = cfg.get("next_stage")
    names = [declared] if isinstance(declared, str) else list(declared or [])
    for name in plans.get("configurations", {}):
        if name not in names and resolve_configuration(plans, name).get("previous_stage") == configuration:
            names.append(name)
    return names


def predicted_next_stage_dir(results_dataset_dir: str | Path, trainer_name: str, plans_name: str,
                             previous_stage: str, configuration: str) -> Path:
    """Where ``previous_stage`` (trained as ``trainer_name``) leaves segmentations for ``configuration``."""
    return Path(results_dataset_dir) / f"{trainer_name}__{plans_name}__{previous_stage}" / PREDICTED_NEXT_STAGE / configuration


def logits_to_next_stage(logits: np.ndarray, target_shape: Sequence[int], plans: dict, configuration: str,
                         dataset: DatasetInfo, properties: dict) -> np.ndarray:
    """nnU-Net's ``resample_and_save`` minus the saving: ``(heads, *shape)`` logits of
    ``configuration`` → segmentation of ``target_shape`` (the next stage's preprocessed shape).

    As nnU-Net, the resampling is this configuration's ``resampling_fn_probabilities`` with current
    = new spacing = this configuration's spacing (prefixed by the case's axis-0 spacing for 2D), so
    the separate-z decision follows this stage's spacing."""
    cfg = resolve_configuration(plans, configuration)
    spacing = [float(s) for s in cfg["spacing"]]
    if len(spacing) != len(properties["shape_after_cropping_and_before_resampling"]):
        tf = [int(i) for i in plans["transpose_forward"]]
        spacing = [float(properties["spacing"][tf[0]]), *spacing]
    res = Resampling.from_plans(cfg.get("resampling_fn_probabilities", "resample_data_or_seg_to_shape"),
                                cfg.get("resampling_fn_probabilities_kwargs"), "probabilities")
    target = tuple(int(s) for s in target_shape)
    if res.fn == "no_resampling_hack" or tuple(logits.shape[1:]) == target:
        resampled = np.asarray(logits)
    else:
        resampled = resample_data(np.asarray(logits), target, spacing, spacing, order=res.order, order_z=res.order_z,
                                  force_separate_z=res.force_separate_z)
    dtype = np.uint8 if len(dataset.foreground_labels) < 255 else np.uint16
    if dataset.has_regions:
        import torch

        probs = torch.sigmoid(torch.from_numpy(np.asarray(resampled, dtype=np.float32))).numpy()
        seg = np.zeros(target, dtype)
        for i, c in enumerate(dataset.regions_class_order or ()):  # set whenever has_regions
            seg[probs[i] > 0.5] = c
        return seg
    return np.asarray(resampled).argmax(0).astype(dtype)  # argmax of logits = argmax of softmax


def save_stage_segmentation(folder: str | Path, case: str, seg: np.ndarray) -> Path:
    """``<folder>/<case>.npz`` with key ``seg`` (nnU-Net's numpy dataset ``save_seg``), written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{case}.npz"
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the temporary name
            np.savez_compressed(f, seg=seg)
    return target


def stage_segmentation_file(folder: str | Path, case: str) -> Path | None:
    """The previous-stage file of ``case``, or None: the unpacked ``.npy`` (memory-mapped) unless
    an ``.npz`` is newer (the previous stage was validated again), then ``.npz``, then nnU-Net's ``.b2nd``."""
    folder = Path(folder)
    npy, npz, b2nd = (folder / f"{case}{ext}" for ext in (".npy", ".npz", ".b2nd"))
    if npy.is_file() and (not npz.is_file() or npy.stat().st_mtime_ns >= npz.stat().st_mtime_ns):
        return npy
    for p in (npz, b2nd):
        if p.is_file():
            return p
    return None


def unpack_stage_segmentations(folder: str | Path, cases: Sequence[str]) -> int:
    """Writes ``<case>.npy`` next to each ``.npz`` / ``.b2nd`` that has no up-to-date one (as
    nnU-Net's former ``unpack_dataset``), so the loader crops patches from memory maps instead of
    decompressing whole volumes per sample. Returns how many were written."""
    n = 0
    for case in cases:
        path = stage_segmentation_file(folder, case)
        if path is None or path.suffix == ".npy":
            continue
        seg = load_stage_segmentation(folder, case, mmap=False)
        with atomic_path(Path(folder) / f"{case}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(seg))
        n += 1
    return n


def missing_message(folder: str | Path, cases: Sequence[str], previous_stage: str, dataset: str,
                    trainer_name: str, plans_name: str) -> str:
    tr = "" if trainer_name == "nnUNetTrainer" else f" -tr {trainer_name}"
    pl = "" if plans_name == "nnUNetPlans" else f" -p {plans_name}"
    more = f" (and {len(cases) - 1} more)" if len(cases) > 1 else ""
    return (f"case {cases[0]}{more}: previous-stage segmentation missing in {folder}; train every fold of "
            f"{previous_stage} first (`oxunet train -d {dataset} -c {previous_stage} -f 0{tr}{pl}`, then folds 1-4: "
            f"each fold's final validation writes its validation cases there)")


def load_stage_segmentation(folder: str | Path, case: str, expected_shape: Sequence[int] | None = None,
                            *, mmap: bool = True) -> np.ndarray:
    """A previous-stage segmentation (spatial shape, integer); :class:`CascadeError` when missing or
    when its shape differs from ``expected_shape`` (stale predictions for other preprocessing)."""
    path = stage_segmentation_file(folder, case)
    if path is None:
        raise CascadeError(f"case {case}: previous-stage segmentation {Path(folder) / (case + '.npz')} not found")
    if path.suffix == ".npy":
        seg = np.load(path, mmap_mode="r" if mmap else None)
    elif path.suffix == ".npz":
        with np.load(path) as z:
            if "seg" not in z:
                raise CascadeError(f"{path}: no 'seg' array (keys: {list(z.keys())})")
            seg = z["seg"]
    else:
        try:
            import blosc2
        except ImportError:
            raise CascadeError(f"{path}: reading nnU-Net's .b2nd files needs the blosc2 package") from None
        seg = blosc2.open(urlpath=str(path), mode="r")[:]
    if expected_shape is not None and tuple(seg.shape) != tuple(int(s) for s in expected_shape):
        raise CascadeError(f"{path}: shape {tuple(seg.shape)} does not match the preprocessed case "
                           f"{tuple(int(s) for s in expected_shape)} (predicted for other preprocessing? rerun the "
                           f"previous stage's validation)")
    return seg


def one_hot_foreground(seg: np.ndarray, labels: Sequence[int], dtype=np.float32) -> np.ndarray:
    """nnU-Net's ``convert_labelmap_to_one_hot`` with the foreground labels: ``(len(labels), *seg.shape)``."""
    out = np.zeros((len(labels), *seg.shape), dtype)
    for i, lab in enumerate(labels):
        out[i] = seg == lab
    return out
