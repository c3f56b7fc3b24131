"""Dataset fingerprint, exactly as nnU-Net's ``DatasetFingerprintExtractor`` computes it:
per case the spacing, the shape after cropping to the nonzero region, the crop ratio and
foreground intensity samples (RandomState(1234), with replacement, 1e8 / n_cases per case);
statistics over the pooled samples per channel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import __version__
from .._workers import map_cases
from ..dataset import DatasetInfo, load_dataset_json, training_cases
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


def analyze_case(image_files: list, label_file, reader_name: str, num_samples: int) -> dict:
    """One case's contribution to the fingerprint (runs in a worker)."""
    io = io_class_by_name(reader_name)()
    images, props = io.read_images(image_files)
    seg, _ = io.read_seg(label_file)
    seg = seg.astype(np.int16)  # label values are integers (verified); -1 must fit
    cropped, seg_cropped, _ = crop_to_nonzero(images, seg)
    return {
        "shape_after_crop": [int(s) for s in cropped.shape[1:]],
        "spacing": [float(s) for s in props["spacing"]],
        "relative_size": float(np.prod(cropped.shape[1:]) / np.prod(images.shape[1:])),
        "samples": foreground_intensity_samples(seg_cropped, cropped, num_samples),
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
    jobs = [(c["images"], c["label"], reader, per_case) for c in cases.values()]
    results = map_cases(analyze_case, jobs, num_processes, "Extracting dataset fingerprint", quiet)

    stats = {}
    for ch in range(info.num_channels):
        pooled = np.concatenate([r["samples"][ch] for r in results])
        stats[str(ch)] = channel_statistics(pooled) if pooled.size else {
            k: float("nan") for k in ("mean", "median", "std", "min", "max", "percentile_99_5", "percentile_00_5")
        }
    fingerprint = {
        "spacings": [r["spacing"] for r in results],
        "shapes_after_crop": [r["shape_after_crop"] for r in results],
        "foreground_intensity_properties_per_channel": stats,
        "median_relative_size_after_cropping": float(np.median([r["relative_size"] for r in results])),
        "oxunet": {"artefact": "fingerprint", "format_version": FORMAT_VERSION, "version": __version__, "cases": list(cases)},
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(fingerprint, indent=2))
    return fingerprint
