"""Synthetic CT-like data for benchmarks, made without any image reader (no SimpleITK needed):
a preprocessed dataset (plans from a made-up fingerprint by nnU-Net's planner, cases written
straight to the preprocessed storage), and a raw-looking volume with its spacing for prediction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def body_volume(shape: Sequence[int], labels: int, seed: int = 0, hu: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """An elliptic body with `labels` ellipsoid organs: ``(image float32, seg uint8)`` of `shape`
    (HU-like intensities with ``hu``, else roughly standardised)."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    z, y, x = np.ogrid[tuple(slice(0, s) for s in shape)]
    body = ((y - shape[1] / 2) / (0.42 * shape[1])) ** 2 + ((x - shape[2] / 2) / (0.45 * shape[2])) ** 2 < 1
    body = np.broadcast_to(body, shape)
    img = np.where(body, np.float32(40), np.float32(-1000 if hu else -2)).astype(np.float32)
    img += rng.normal(0, 25 if hu else 0.3, size=shape).astype(np.float32)
    seg = np.zeros(shape, np.uint8)
    for lab in range(1, labels + 1):
        c = [rng.uniform(0.3, 0.7) * s for s in shape]
        r = [max(1.5, rng.uniform(0.06, 0.16) * s) for s in shape]
        m = (((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 < 1) & body
        seg[m] = lab
        img[m] += np.float32((30 if hu else 0.4) * lab)
    return img, seg


def _fingerprint(shape, spacing, num_cases: int) -> dict:
    props = {"mean": 60.0, "std": 40.0, "min": -50.0, "max": 700.0, "median": 55.0,
             "percentile_00_5": -20.0, "percentile_99_5": 400.0}
    return {"spacings": [list(spacing)] * num_cases, "shapes_after_crop": [list(shape)] * num_cases,
            "foreground_intensity_properties_per_channel": {"0": props}, "median_relative_size_after_cropping": 1.0}


def write_preprocessed_dataset(preprocessed_dir, dataset_id: int = 990, *, num_cases: int = 8,
                               shape: Sequence[int] = (160, 160, 160), spacing: Sequence[float] = (1.0, 1.0, 1.0),
                               labels: int = 3, patch_size: Sequence[int] | None = None, batch_size: int | None = None,
                               features: Sequence[int] | None = None, seed: int = 0) -> Path:
    """A CT-like preprocessed dataset ``Dataset{id}_SyntheticCT`` for 3d_fullres: nnU-Net's plans for
    this shape and spacing (patch 128³ and batch 2 for the defaults), `num_cases` cases with
    class locations, dataset.json. `patch_size`/`batch_size`/`features` shrink it (tests)."""
    from ..kernels import sample_class_locations
    from ..planning.planner import plan_from_fingerprint
    from ..preprocessing.storage import write_case

    name = f"Dataset{int(dataset_id):03d}_SyntheticCT"
    folder = Path(preprocessed_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    ds = {"channel_names": {"0": "CT"}, "labels": {"background": 0, **{f"organ{i}": i for i in range(1, labels + 1)}},
          "numTraining": num_cases, "file_ending": ".nii.gz"}
    plans = plan_from_fingerprint(_fingerprint(shape, spacing, num_cases), ds, name, "SimpleITKIO")
    cfg = plans["configurations"]["3d_fullres"]
    if patch_size is not None:
        cfg["patch_size"] = [int(p) for p in patch_size]
    if batch_size is not None:
        cfg["batch_size"] = int(batch_size)
    if features is not None:
        arch = cfg["architecture"]["arch_kwargs"]
        n = len(features)
        for key in ("kernel_sizes", "strides", "n_conv_per_stage"):
            arch[key] = arch[key][:n]
        arch["n_conv_per_stage_decoder"] = arch["n_conv_per_stage_decoder"][:n - 1]
        arch["n_stages"], arch["features_per_stage"] = n, [int(f) for f in features]
    plans["configurations"] = {"3d_fullres": cfg}
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans, indent=1))
    (folder / "dataset.json").write_text(json.dumps(ds, indent=1))
    data_dir = folder / cfg["data_identifier"]
    for i in range(num_cases):
        img, seg = body_volume(shape, labels, seed + i, hu=False)
        seg8 = seg.astype(np.int8)[None]
        locations = sample_class_locations(seg8, list(range(1, labels + 1)), seed=1234)
        props = {"spacing": [float(s) for s in spacing], "shape_before_cropping": list(shape),
                 "bbox_used_for_cropping": [[0, int(s)] for s in shape],
                 "shape_after_cropping_and_before_resampling": list(shape)}
        write_case(data_dir, f"case_{i:03d}", img[None], seg8, props, locations)
    return folder
