"""nnU-Net's ``nnUNetv2_plot_overlay_pngs``: one PNG per training case of a dataset, the image
channel with its segmentation overlaid at the slice that holds the most of every class.

From the raw data (``use_raw``) or, as nnU-Net by default, from a configuration's preprocessed
data (after cropping, resampling and normalisation: what the network sees). Slice choice is
nnU-Net's ``select_slice_to_plot2``: per class, the fraction of its voxels in each slice, averaged
over classes, highest wins. Rendering is :mod:`oxunet.overlay`'s (no plotting library).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .overlay import load_volume, render_overlay, write_png


def slice_to_plot(seg: np.ndarray) -> int:
    """nnU-Net's ``select_slice_to_plot2`` along axis 0 of a 3D label map."""
    classes = [c for c in np.unique(seg) if c > 0]
    if not classes:
        return seg.shape[0] // 2
    share = np.zeros(seg.shape[0])
    for c in classes:
        per_slice = (seg == c).reshape(seg.shape[0], -1).sum(1)
        share += per_slice / per_slice.sum()
    return int(np.argmax(share / len(classes)))


def _write(image: np.ndarray, seg: np.ndarray, spacing, out: str, alpha: float) -> str:
    seg = np.where(seg < 0, 0, seg).astype(np.int32)  # preprocessed seg: -1 outside the crop
    write_png(out, render_overlay(image, seg, slices=[slice_to_plot(seg)], spacing=spacing, alpha=alpha, min_tile=256))
    return out


def _raw_case(image_file: str, label_file: str, out: str, alpha: float) -> str:
    from .io import select_image_io

    path = Path(image_file)
    reader = select_image_io(".nii.gz" if path.name.endswith(".nii.gz") else path.suffix, path)
    data, props = reader.read_images([image_file])
    seg, _ = load_volume(label_file)
    return _write(data[0], np.rint(seg), props["spacing"], out, alpha)


def _preprocessed_case(folder: str, case: str, channel: int, spacing, out: str, alpha: float) -> str:
    from .preprocessing.storage import open_case

    h = open_case(folder, case)
    if not 0 <= channel < h.data.shape[0]:
        raise ValueError(f"case {case}: channel {channel} out of range (0..{h.data.shape[0] - 1})")
    if h.seg is None:
        raise ValueError(f"case {case}: has no stored segmentation to overlay")
    return _write(np.asarray(h.data[channel]), np.asarray(h.seg[0]), spacing, out, alpha)


def overlay_pngs(dataset: str | int, output_dir: str | Path, paths, *, num_processes: int = 8, channel: int = 0,
                 use_raw: bool = False, plans_name: str = "nnUNetPlans", configuration: str = "3d_fullres",
                 alpha: float = 0.6, quiet: bool = False) -> list[str]:
    """Writes ``output_dir/<case>.png`` for every training case; returns the files."""
    from ._workers import map_cases
    from .dataset import dataset_name, load_dataset_json, training_cases

    name = dataset_name(dataset, paths)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if use_raw:
        raw = paths.require("raw") / name
        info = load_dataset_json(raw / "dataset.json")
        if not 0 <= channel < info.num_channels:
            raise ValueError(f"channel {channel} out of range: {name} has {info.num_channels} channel(s)")
        raw_jobs = [(entry["images"][channel], entry["label"], str(out / f"{case}.png"), alpha)
                    for case, entry in training_cases(raw, info).items()]
        return map_cases(_raw_case, raw_jobs, num_processes, "overlays (raw)", quiet=quiet)
    from .planning import load_plans, resolve_configuration
    from .preprocessing.storage import list_cases

    pre = paths.require("preprocessed") / name
    plans_file = pre / f"{plans_name}.json"
    if not plans_file.is_file():
        raise FileNotFoundError(f"{plans_file}: plans not found (run `oxunet plan-and-preprocess -d {dataset}`, or use --use_raw)")
    cfg = resolve_configuration(load_plans(plans_file), configuration, str(plans_file))
    folder = pre / cfg["data_identifier"]
    cases = list_cases(folder) if folder.is_dir() else []
    if not cases:
        raise FileNotFoundError(f"{folder}: no preprocessed cases for {configuration} (run `oxunet preprocess -d {dataset} "
                                f"-c {configuration}`, or use --use_raw)")
    jobs = [(str(folder), case, channel, cfg["spacing"], str(out / f"{case}.png"), alpha) for case in cases]
    return map_cases(_preprocessed_case, jobs, num_processes, "overlays (preprocessed)", quiet=quiet)
