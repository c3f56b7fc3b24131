"""A small synthetic 3D dataset in nnU-Net's raw layout: the demo's default data.

Each case is an MRI-like volume (noisy tissue with a smooth intensity bias) holding two solid
ellipsoids at random positions, sizes and intensities: a bright ``core`` (label 1) and a dark
``cyst`` (label 2). Designed so that a small U-Net learns both in a few hundred iterations on a
CPU, whatever the training seed:

- tissue fills the whole volume: with a dark outside, the cyst's intensity would sit *between*
  outside and tissue and the network would have to learn a band from context (an earlier hollow,
  dim "shell" on a dark background stayed at Dice 0 in two of five runs);
- both structures are solid and at least ~5 voxels in radius, so one-voxel boundary errors cost
  little Dice;
- the two never overlap (opposite halves along x) and both are in every case.

Slightly anisotropic spacing so the planner has something to decide.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DEMO_DATASET = "Dataset990_OxunetDemo"
LABELS = {"background": 0, "core": 1, "cyst": 2}
TISSUE, NOISE = 100.0, 10.0


def _ellipsoid(grid, centre, radii) -> np.ndarray:
    z, y, x = grid
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2


def demo_case(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (image float32, label uint8) pair."""
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    # a smooth multiplicative bias (0.9-1.1) along a random direction, as MRI coil shading
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    ramp = sum(d * g / max(s - 1, 1) for d, g, s in zip(direction, grid, shape))
    image = np.broadcast_to(TISSUE * (1.0 + 0.1 * (ramp - 0.5 * direction.sum())), shape).astype(np.float32)
    seg = np.zeros(shape, np.uint8)
    for label, half in ((1, 0), (2, 1)):
        centre = [rng.uniform(0.4, 0.6) * shape[0], rng.uniform(0.35, 0.65) * shape[1],
                  (0.27 + 0.46 * half + rng.uniform(-0.03, 0.03)) * shape[2]]
        radii = [rng.uniform(0.2, 0.28) * shape[0], rng.uniform(0.15, 0.2) * shape[1], rng.uniform(0.13, 0.17) * shape[2]]
        region = _ellipsoid(grid, centre, radii) < 1
        seg[region] = label
        image[region] = rng.uniform(170, 210) if label == 1 else rng.uniform(25, 45)
    image += rng.normal(0.0, NOISE, size=shape).astype(np.float32)
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
