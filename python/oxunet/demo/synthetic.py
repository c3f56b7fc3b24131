"""A small synthetic 3D dataset in nnU-Net's raw layout: the demo's default data.

Each case is an MRI-like volume (noisy tissue block in a dark background) with two structures a
small U-Net learns in minutes on a CPU: a bright ellipsoid (label 1) and a dim shell-shaped
ellipsoid (label 2), at random positions, sizes and intensities. Slightly anisotropic spacing
so the planner has something to decide.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DEMO_DATASET = "Dataset990_OxunetDemo"
LABELS = {"background": 0, "core": 1, "shell": 2}


def _ellipsoid(grid, centre, radii) -> np.ndarray:
    z, y, x = grid
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2


def demo_case(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (image float32, label uint8) pair."""
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    image = np.zeros(shape, np.float32)
    margin = [max(1, s // 10) for s in shape]
    tissue = tuple(slice(m, s - m) for m, s in zip(margin, shape))
    image[tissue] = 100.0
    seg = np.zeros(shape, np.uint8)
    # core and shell sit in opposite halves along x so they never overlap
    for label, half in ((1, 0), (2, 1)):
        centre = [rng.uniform(0.35, 0.65) * shape[0], rng.uniform(0.3, 0.7) * shape[1],
                  (0.27 + 0.46 * half + rng.uniform(-0.04, 0.04)) * shape[2]]
        radii = [rng.uniform(0.16, 0.24) * shape[0], rng.uniform(0.14, 0.2) * shape[1], rng.uniform(0.12, 0.17) * shape[2]]
        r = _ellipsoid(grid, centre, radii)
        region = (r < 1) if label == 1 else (r < 1) & (r > 0.45)
        seg[region] = label
        image[region] = rng.uniform(170, 210) if label == 1 else rng.uniform(35, 55)
    image += rng.normal(0.0, 14.0, size=shape).astype(np.float32)
    return image, seg


def make_demo_dataset(root: str | Path, num_cases: int = 20, shape: tuple[int, int, int] = (24, 40, 40),
                      spacing: tuple[float, float, float] = (1.5, 1.0, 1.0), seed: int = 0) -> Path:
    """Writes ``root/Dataset990_OxunetDemo`` (imagesTr, labelsTr, dataset.json); returns it.
    ``spacing`` is in numpy (z, y, x) order. An existing complete dataset is kept as it is."""
    import SimpleITK as sitk

    folder = Path(root) / DEMO_DATASET
    if (folder / "dataset.json").is_file():
        return folder
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(num_cases):
        image, seg = demo_case(shape, rng)
        for array, path in ((image, folder / "imagesTr" / f"demo_{i:03d}_0000.nii.gz"),
                            (seg, folder / "labelsTr" / f"demo_{i:03d}.nii.gz")):
            img = sitk.GetImageFromArray(array)
            img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
            sitk.WriteImage(img, str(path))
    dataset_json = {"channel_names": {"0": "MRI"}, "labels": LABELS, "numTraining": num_cases,
                    "file_ending": ".nii.gz", "name": "oxunet demo (synthetic)"}
    # dataset.json last: its presence marks a complete dataset
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=1))
    return folder
