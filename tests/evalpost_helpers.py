"""Small label-map folders for the evaluation / postprocessing / ensembling tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk


# The plans fields nnunetv2's PlansManager needs for reading/writing and label handling.
PLANS = {"image_reader_writer": "SimpleITKIO", "dataset_name": "Dataset999_Test", "plans_name": "nnUNetPlans",
         "configurations": {}, "original_median_spacing_after_transp": [1, 1, 1],
         "original_median_shape_after_transp": [1, 1, 1], "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
         "experiment_planner_used": "x", "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {}}


def write_seg(path: Path, seg: np.ndarray, spacing=(3.0, 1.0, 1.5), origin=(1.0, 2.0, 3.0)) -> None:
    """Writes a (z, y, x) label map with the given numpy-order spacing."""
    img = sitk.GetImageFromArray(seg.astype(np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))


def blob(shape, rng, n_blobs=2, radius=(2, 5)) -> np.ndarray:
    """A boolean mask of a few random ellipsoids."""
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    out = np.zeros(shape, bool)
    for _ in range(n_blobs):
        c = [rng.uniform(0.2, 0.8) * s for s in shape]
        r = [rng.uniform(*radius) for _ in shape]
        out |= sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grid, c, r)) < 1
    return out


def random_case(shape, rng, labels=(1, 2)) -> np.ndarray:
    seg = np.zeros(shape, np.uint8)
    for lab in labels:
        seg[blob(shape, rng)] = lab
    return seg


def perturb(seg: np.ndarray, rng, labels=(1, 2), speckles=6) -> np.ndarray:
    """A 'prediction': the reference shifted by a voxel plus a few small false-positive specks."""
    pred = np.roll(seg, int(rng.integers(-1, 2)), axis=int(rng.integers(0, seg.ndim))).copy()
    for _ in range(speckles):
        idx = tuple(int(rng.integers(0, s - 2)) for s in seg.shape)
        pred[tuple(slice(i, i + 2) for i in idx)] = rng.choice(labels)
    return pred


def make_folders(root: Path, n=5, shape=(12, 24, 20), seed=0, labels=(1, 2), ignore_label=None):
    """``root/gt`` and ``root/pred`` with ``n`` cases; case 0's prediction misses label 2, case 1
    has label 2 in neither (NaN Dice); with ``ignore_label`` a slab of each reference is ignored."""
    rng = np.random.default_rng(seed)
    gt, pred = root / "gt", root / "pred"
    gt.mkdir(parents=True)
    pred.mkdir()
    for i in range(n):
        ref = random_case(shape, rng, labels)
        p = perturb(ref, rng, labels)
        if i == 0:
            p[p == 2] = 0
        if i == 1:
            ref[ref == 2] = 0
            p[p == 2] = 1
        if ignore_label is not None:
            ref[:, :3] = ignore_label
        write_seg(gt / f"case_{i:03d}.nii.gz", ref)
        write_seg(pred / f"case_{i:03d}.nii.gz", p)
    return gt, pred


def dataset_json(path: Path, labels: dict, file_ending=".nii.gz", **extra) -> Path:
    ds = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 5, "file_ending": file_ending, **extra}
    path.write_text(json.dumps(ds, indent=2))
    return path
