"""Dataset fingerprint, exactly as nnU-Net's ``DatasetFingerprintExtractor`` computes it:
per case the spacing, the shape after cropping to the nonzero region, the crop ratio and
foreground intensity samples (RandomState(1234), with replacement, 1e8 / n_cases per case);
statistics over the pooled samples per channel."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .. import __version__
from .._workers import map_cases
from ..dataset import DatasetInfo, load_dataset_json, training_cases
from ..errors import KernelError, PlanningError
from ..io import atomic_path, io_class_by_name, select_image_io
from ..kernels import crop_to_nonzero

FINGERPRINT_FILE = "dataset_fingerprint.json"
FORMAT_VERSION = 1
TOTAL_INTENSITY_SAMPLES = 10e7  # nnU-Net's constant (= 1e8 samples over the whole dataset)


def foreground_intensity_samples(seg: np.ndarray, images: np.ndarray, num_samples: int, seed: int = 1234) -> list[np.ndarray]:
    """Per channel, ``num_samples`` foreground intensities drawn with replacement (seg > 0)."""
    rs = np.random.RandomState(seed)
    mask = seg[0] > 0
    out = []
    for channel in images:
        fg = channel[mask]
        out.append(rs.choice(fg, num_samples, replace=True) if fg.size else np.zeros(0, channel.dtype))
    return out


def analyze_case(image_files: list, label_file, reader_name: str, num_samples: int, pooled_file: str, index: int) -> dict:
    """One case's contribution to the fingerprint (runs in a worker). Its intensity samples go
    straight into row block ``index`` of the shared ``pooled_file`` array instead of being
    pickled back to the parent (1e8 samples per dataset would be 400 MB through a pipe)."""
    io_cls = io_class_by_name(reader_name)
    if io_cls is None:  # the parent passes the name of the reader it selected
        raise ValueError(f"unknown image reader {reader_name!r}")
    io = io_cls()
    images, props = io.read_images(image_files)
    seg, _ = io.read_seg(label_file)
    if seg.shape[1:] != images.shape[1:]:
        raise PlanningError(f"{label_file}: label shape {tuple(seg.shape[1:])} differs from the images "
                            f"{tuple(images.shape[1:])} ({image_files[0]})")
    if not np.isfinite(images).all():
        raise PlanningError(f"{image_files[0]}: the case's images contain NaN/inf (run `oxunet verify`)")
    seg = seg.astype(np.int16)  # label values are integers (verified); -1 must fit
    try:
        cropped, seg_cropped, _ = crop_to_nonzero(images, seg)
    except KernelError as e:
        raise PlanningError(f"{image_files[0]}: {e}") from None
    samples = foreground_intensity_samples(seg_cropped, cropped, num_samples)
    has_foreground = samples[0].size > 0
    if has_foreground:
        pooled = np.load(pooled_file, mmap_mode="r+")
        for ch, values in enumerate(samples):
            pooled[ch, index * num_samples : (index + 1) * num_samples] = values
        del pooled
    return {
        "shape_after_crop": [int(s) for s in cropped.shape[1:]],
        "spacing": [float(s) for s in props["spacing"]],
        "relative_size": float(np.prod(cropped.shape[1:]) / np.prod(images.shape[1:])),
        "has_foreground": has_foreground,
    }


def channel_statistics(samples: np.ndarray) -> dict:
    p005, median, p995 = np.percentile(samples, (0.5, 50.0, 99.5))
    return {
        "mean": float(np.mean(samples)),
        "median": float(median),
        "std": float(np.std(samples)),
        "min": float(np.min(samples)),
        "max": float(np.max(samples)),
        "percentile_99_5": float(p995),
        "percentile_00_5": float(p005),
    }


def _scratch_root(nbytes: int) -> str | None:
    """RAM-backed /dev/shm when it has room (containers often give it only 64 MB), else the temp dir."""
    try:
        if shutil.disk_usage("/dev/shm").free > 2 * nbytes:
            return "/dev/shm"
    except OSError:
        pass
    return None


def extract_fingerprint(
    raw_dataset_dir: str | Path,
    output_dir: str | Path,
    num_processes: int = 4,
    overwrite: bool = False,
    quiet: bool = False,
    info: DatasetInfo | None = None,
) -> dict:
    """Computes (or loads, unless ``overwrite``) ``<output_dir>/dataset_fingerprint.json``."""
    raw_dataset_dir, output_dir = Path(raw_dataset_dir), Path(output_dir)
    target = output_dir / FINGERPRINT_FILE
    if target.is_file() and not overwrite:
        return json.loads(target.read_text())
    info = info or load_dataset_json(raw_dataset_dir / "dataset.json")
    cases = training_cases(raw_dataset_dir, info)
    if not cases:
        raise FileNotFoundError(f"{raw_dataset_dir}: no training cases found")
    first = next(iter(cases.values()))["images"][0]
    reader = type(select_image_io(info.file_ending, first, info.image_reader_writer)).__name__
    per_case = int(TOTAL_INTENSITY_SAMPLES // len(cases))
    scratch = Path(tempfile.mkdtemp(prefix="oxunet-fingerprint-", dir=_scratch_root(4 * info.num_channels * per_case * len(cases))))
    try:
        pooled_file = scratch / "samples.npy"
        blank = np.lib.format.open_memmap(pooled_file, mode="w+", dtype=np.float32, shape=(info.num_channels, per_case * len(cases)))
        del blank  # workers fill it; opened again below
        jobs = [(c["images"], c["label"], reader, per_case, str(pooled_file), i) for i, c in enumerate(cases.values())]
        results = map_cases(analyze_case, jobs, num_processes, "Extracting dataset fingerprint", quiet)
        pooled: np.ndarray = np.load(pooled_file, mmap_mode="r")
        with_fg = [i for i, r in enumerate(results) if r["has_foreground"]]
        if len(with_fg) < len(results):  # cases without foreground contribute nothing (as nnU-Net)
            pooled = np.concatenate([pooled[:, i * per_case : (i + 1) * per_case] for i in with_fg], axis=1) if with_fg \
                else np.zeros((info.num_channels, 0), np.float32)
        if not with_fg:
            # nnU-Net would write NaN statistics (and plan a model trained on NaN); refuse instead
            raise PlanningError(f"{raw_dataset_dir}: none of the {len(results)} label files has foreground; "
                                "there is nothing to learn (check labelsTr)")
        stats, values = {}, None
        for ch in range(info.num_channels):
            values = np.asarray(pooled[ch])
            stats[str(ch)] = channel_statistics(values)
        del pooled, values
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    fingerprint = {
        "spacings": [r["spacing"] for r in results],
        "shapes_after_crop": [r["shape_after_crop"] for r in results],
        "foreground_intensity_properties_per_channel": stats,
        "median_relative_size_after_cropping": float(np.median([r["relative_size"] for r in results])),
        "oxunet": {"artefact": "fingerprint", "format_version": FORMAT_VERSION, "version": __version__, "cases": list(cases)},
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(fingerprint, indent=2, allow_nan=False))  # JSON has no NaN
    return fingerprint
