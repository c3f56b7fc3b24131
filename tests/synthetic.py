"""Small synthetic datasets in nnU-Net's raw layout, for planning/preprocessing tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HIPPOCAMPUS = SHARED / "Dataset004_Hippocampus"


def _write(path: Path, arr: np.ndarray, spacing_np_order) -> None:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in spacing_np_order[::-1]))  # ITK order is reversed
    sitk.WriteImage(img, str(path))


def body_case(shape, rng, labels=2, ct=True):
    """A CT-like case: elliptic body in zero (or -1000 shifted to 0 after crop semantics) background,
    organ labels inside. Returns (image float32, seg uint8)."""
    z, y, x = np.ogrid[tuple(slice(0, s) for s in shape)]
    cy, cx = shape[1] / 2, shape[2] / 2
    body = ((y - cy) / (0.42 * shape[1])) ** 2 + ((x - cx) / (0.45 * shape[2])) ** 2 < 1
    body = np.broadcast_to(body, shape)
    img = np.zeros(shape, np.float32)
    base = rng.normal(40 if ct else 300, 25 if ct else 60, size=shape).astype(np.float32)
    img[body] = base[body]
    seg = np.zeros(shape, np.uint8)
    for lab in range(1, labels + 1):
        c = [rng.uniform(0.35, 0.65) * s for s in shape]
        r = [rng.uniform(0.1, 0.2) * s for s in shape]
        m = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 < 1
        m &= body
        seg[m] = lab
        img[m] += 60 * lab
    return img, seg


def make_dataset(
    root: Path,
    shapes,
    spacings,
    channel_names=("CT",),
    labels=2,
    seed=0,
    ending=".nii.gz",
) -> Path:
    """Writes a dataset with one case per entry of ``shapes``/``spacings`` (numpy axis order)."""
    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    for i, (shape, spacing) in enumerate(zip(shapes, spacings)):
        img, seg = body_case(tuple(shape), rng, labels, ct=channel_names[0] == "CT")
        for c in range(len(channel_names)):
            _write(root / "imagesTr" / f"case_{i:03d}_{c:04d}{ending}", img * (1 + 0.1 * c), spacing)
        _write(root / "labelsTr" / f"case_{i:03d}{ending}", seg, spacing)
    ds = {
        "channel_names": {str(i): n for i, n in enumerate(channel_names)},
        "labels": {"background": 0, **{f"organ{lab}": lab for lab in range(1, labels + 1)}},
        "numTraining": len(shapes),
        "file_ending": ending,
    }
    (root / "dataset.json").write_text(json.dumps(ds, indent=1))
    return root


def hippocampus_subset(root: Path, n: int) -> Path:
    """The first ``n`` Hippocampus cases copied into ``root`` (a new raw dataset folder)."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in (HIPPOCAMPUS / "imagesTr").glob("*_0000.nii.gz"))[:n]
    for c in cases:
        shutil.copy(HIPPOCAMPUS / "imagesTr" / f"{c}_0000.nii.gz", root / "imagesTr")
        shutil.copy(HIPPOCAMPUS / "labelsTr" / f"{c}.nii.gz", root / "labelsTr")
    ds = json.loads((HIPPOCAMPUS / "dataset.json").read_text())
    ds["numTraining"] = n
    (root / "dataset.json").write_text(json.dumps(ds))
    return root


def make_2d_dataset(root: Path, shapes, channel_names=("rescale_to_0_1",), labels=2, seed=0) -> Path:
    """A 2D dataset of grayscale PNGs (nnU-Net's NaturalImage2DIO: pseudo-3D (1, H, W), spacing
    (999, 1, 1)), one case per (H, W) in ``shapes``; uint8 intensities, labels in a disc each."""
    from skimage.io import imsave

    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    for i, (h, w) in enumerate(shapes):
        y, x = np.ogrid[:h, :w]
        img = rng.normal(80, 20, size=(h, w))
        seg = np.zeros((h, w), np.uint8)
        for lab in range(1, labels + 1):
            cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, rng.uniform(0.08, 0.15) * min(h, w)
            disc = (y - cy) ** 2 + (x - cx) ** 2 < r**2
            seg[disc] = lab
            img[disc] += 50 * lab
        img8 = np.clip(img, 0, 255).astype(np.uint8)
        for c in range(len(channel_names)):
            imsave(root / "imagesTr" / f"case_{i:03d}_{c:04d}.png", img8, check_contrast=False)
        imsave(root / "labelsTr" / f"case_{i:03d}.png", seg, check_contrast=False)
    ds = {
        "channel_names": {str(i): n for i, n in enumerate(channel_names)},
        "labels": {"background": 0, **{f"organ{lab}": lab for lab in range(1, labels + 1)}},
        "numTraining": len(shapes),
        "file_ending": ".png",
    }
    (root / "dataset.json").write_text(json.dumps(ds, indent=1))
    return root


def find_shared_dataset(name: str = "Dataset004_Hippocampus") -> Path | None:
    """``shared/data/<name>`` in the nearest ancestor of this checkout that has it (also finds
    it from a git worktree nested one level deeper than the main checkout); None if absent."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data" / name
        if candidate.is_dir():
            return candidate
    return None


def copy_dataset_subset(source: Path, root: Path, n: int) -> Path:
    """The first ``n`` single-channel cases of ``source`` copied into ``root`` (a new raw dataset
    folder) with dataset.json's numTraining adjusted."""
    ds = json.loads((source / "dataset.json").read_text())
    ending = ds["file_ending"]
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    cases = sorted(p.name[: -len("_0000" + ending)] for p in (source / "imagesTr").glob(f"*_0000{ending}"))[:n]
    for c in cases:
        shutil.copy(source / "imagesTr" / f"{c}_0000{ending}", root / "imagesTr")
        shutil.copy(source / "labelsTr" / f"{c}{ending}", root / "labelsTr")
    ds["numTraining"] = len(cases)
    (root / "dataset.json").write_text(json.dumps(ds))
    return root


def hippocampus_dir() -> Path | None:
    """The Hippocampus dataset: ``HIPPOCAMPUS`` if present, else ``$OXUNET_HIPPOCAMPUS`` (for a
    checkout whose ``../shared/data`` lies elsewhere, e.g. a git worktree); None if neither exists."""
    import os

    if HIPPOCAMPUS.is_dir():
        return HIPPOCAMPUS
    env = os.environ.get("OXUNET_HIPPOCAMPUS")
    return Path(env) if env and Path(env).is_dir() else None


def make_padded_dataset(
    root: Path,
    shapes,
    spacings,
    pad=6,
    channel_names=("T1", "rescale_to_0_1", "noNorm"),
    labels=2,
    seed=0,
    ending=".nii.gz",
) -> Path:
    """Like :func:`make_dataset`, but each case sits in a zero border of ``pad`` voxels per side,
    so cropping removes well over 25 % of the voxels (nnU-Net then plans ``use_mask_for_norm``
    for ZScore channels). Channel ``c`` is the body image times ``1 + 0.1 c``, shifted by ``20 c``
    inside the body."""
    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    for i, (shape, spacing) in enumerate(zip(shapes, spacings)):
        img, seg = body_case(tuple(shape), rng, labels, ct=False)
        inside = img != 0
        img = np.pad(img, pad)
        seg = np.pad(seg, pad)
        inside = np.pad(inside, pad)
        for c in range(len(channel_names)):
            ch = img * (1 + 0.1 * c)
            ch[inside] += 20 * c
            _write(root / "imagesTr" / f"case_{i:03d}_{c:04d}{ending}", ch.astype(np.float32), spacing)
        _write(root / "labelsTr" / f"case_{i:03d}{ending}", seg, spacing)
    ds = {
        "channel_names": {str(i): n for i, n in enumerate(channel_names)},
        "labels": {"background": 0, **{f"organ{lab}": lab for lab in range(1, labels + 1)}},
        "numTraining": len(shapes),
        "file_ending": ending,
    }
    (root / "dataset.json").write_text(json.dumps(ds, indent=1))
    return root
