"""Planning a dataset on disk: raw ``dataset.json`` + fingerprint -> plans file, with the side
files nnU-Net puts next to it (``dataset.json``, ``splits_final.json``, the fingerprint)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

from ..dataset import DatasetInfo, Paths, dataset_name, load_dataset_json, training_cases
from ..io import atomic_path, select_image_io
from .fingerprint import FINGERPRINT_FILE, extract_fingerprint
from .planner import plan_from_fingerprint
from .plans import PlansError, load_plans, oxunet_stamp, resolve_configuration, validate_plans, write_plans
from .presets import PlannerPreset, resolve_planner
from ..errors import PlanningError


class FingerprintError(PlanningError):
    """The fingerprint file is missing or unusable; the message names the file."""


def load_fingerprint(path: str | Path) -> dict:
    """Reads ``dataset_fingerprint.json`` (ours or nnU-Net's) and checks the keys planning needs."""
    path = Path(path)
    if not path.is_file():
        raise FingerprintError(f"{path}: fingerprint not found (run `oxunet plan -d <dataset>`, which extracts it)")
    try:
        fp = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FingerprintError(f"{path}: cannot be read as JSON ({e}); delete it or pass --clean to re-extract") from None
    keys = ("spacings", "shapes_after_crop", "foreground_intensity_properties_per_channel", "median_relative_size_after_cropping")
    missing = [k for k in keys if k not in fp]
    if missing:
        raise FingerprintError(f"{path}: missing {', '.join(missing)}; pass --clean to re-extract")
    if not fp["spacings"] or len(fp["spacings"]) != len(fp["shapes_after_crop"]):
        raise FingerprintError(f"{path}: needs one spacing and one shape per case; pass --clean to re-extract")
    return fp


def reader_name(raw_dataset_dir: Path, info: DatasetInfo) -> str:
    """The image reader/writer class name for this dataset (dataset.json override, else the first
    reader that opens an example image), as nnU-Net records it in the plans."""
    cases = training_cases(raw_dataset_dir, info)
    example = next(iter(cases.values()))["images"][0] if cases else None
    return type(select_image_io(info.file_ending, example, info.image_reader_writer)).__name__


def copy_splits(raw_dataset_dir: Path, preprocessed_dir: Path) -> None:
    """Copies ``splits_final.json`` from raw as nnU-Net does; an existing copy must agree on every
    fold of the raw file (it may hold more folds)."""
    source, target = raw_dataset_dir / "splits_final.json", preprocessed_dir / "splits_final.json"
    if not source.is_file():
        return
    if not target.is_file():
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        return
    try:
        a, b = json.loads(source.read_text()), json.loads(target.read_text())
    except json.JSONDecodeError as e:
        raise PlansError(f"{source} or {target}: cannot be read as JSON ({e})") from None
    for fold, split in enumerate(a):
        if fold >= len(b) or any(set(split[k]) != set(b[fold][k]) for k in ("train", "val")):
            raise PlansError(f"{target}: fold {fold} differs from {source}; delete one of them so that they agree")


def _copy_dataset_json(info: DatasetInfo, preprocessed_dir: Path) -> None:
    with atomic_path(preprocessed_dir / "dataset.json") as tmp:
        shutil.copyfile(info.path, tmp)


def _refuse_if_invalid(raw_dataset_dir: Path, dataset: str | int, num_processes: int, quiet: bool = False) -> None:
    from ..dataset.verify import DatasetVerificationError, verify_dataset

    report = verify_dataset(raw_dataset_dir, num_processes=num_processes)
    if not quiet:
        import sys

        for p in report.problems:
            if p.severity != "error":
                print(f"{raw_dataset_dir.name} {p.case}: {p.severity}: {p.message}", file=sys.stderr)
    if report.ok:
        return
    shown = "; ".join(f"{p.case}: {p.message}" for p in report.errors[:3])
    more = f" (and {len(report.errors) - 3} more)" if len(report.errors) > 3 else ""
    raise DatasetVerificationError(
        f"{raw_dataset_dir.name}: verification found {len(report.errors)} error(s): {shown}{more}. "
        f"Run `oxunet verify -d {dataset}` for the full report and fix them before planning."
    )


def plan_experiment(
    dataset: str | int,
    paths: Paths,
    planner: str | PlannerPreset = "default",
    gpu_memory_gb: float | None = None,
    plans_name: str | None = None,
    overwrite_target_spacing: Sequence[float] | None = None,
    num_processes: int = 4,
    verify: bool | None = False,
    quiet: bool = False,
    clean: bool = False,
) -> dict:
    """Plans a raw dataset and writes ``<preprocessed>/<name>/<plans_name>.json``; returns the plans.

    The fingerprint is extracted into the same folder unless it exists (``clean`` re-extracts).
    ``verify`` first runs :func:`oxunet.dataset.verify.verify_dataset` and refuses a dataset with
    errors (like nnU-Net's ``--verify_dataset_integrity``; it reads every file once more);
    ``verify=None`` (the command line's default) verifies only when the fingerprint is extracted. dataset.json (and ``splits_final.json`` when raw has one) is copied next to
    the plans, as nnU-Net does.
    """
    preset = resolve_planner(planner)
    name = dataset_name(dataset, paths)
    raw_dir = paths.require("raw") / name
    out_dir = paths.require("preprocessed") / name
    info = load_dataset_json(raw_dir / "dataset.json")
    fp_file = out_dir / FINGERPRINT_FILE
    extracted = clean or not fp_file.is_file()
    # None (the command line's default): verify whenever the raw data is about to be read
    if verify or (verify is None and extracted):
        _refuse_if_invalid(raw_dir, dataset, num_processes, quiet)
    out_dir.mkdir(parents=True, exist_ok=True)
    if extracted:
        extract_fingerprint(raw_dir, out_dir, num_processes=num_processes, overwrite=True, quiet=quiet, info=info)
    fingerprint = load_fingerprint(fp_file)
    n_cases = len(fingerprint["spacings"])
    if n_cases != info.num_training:
        hint = f"run `oxunet verify -d {dataset}`" if extracted else "pass --clean to re-extract it if the dataset changed"
        raise FingerprintError(f"{fp_file}: has {n_cases} case(s) but {info.path} declares numTraining={info.num_training}; {hint}")
    plans = plan_from_fingerprint(
        fingerprint, info.raw, name, reader_name(raw_dir, info), preset, gpu_memory_gb, plans_name, overwrite_target_spacing
    )
    plans["oxunet"] = oxunet_stamp(
        planner=preset.name,
        gpu_memory_gb=gpu_memory_gb if gpu_memory_gb is not None else preset.reference_gb,
        overwrite_target_spacing=list(map(float, overwrite_target_spacing)) if overwrite_target_spacing is not None else None,
    )
    _copy_dataset_json(info, out_dir)
    copy_splits(raw_dir, out_dir)
    return write_plans(plans, out_dir / f"{plans['plans_name']}.json")


def import_nnunet_plans(file: str | Path, dataset: str | int, paths: Paths, plans_name: str | None = None) -> dict:
    """Validates an nnU-Net plans file and saves it as ``<preprocessed>/<name>/<plans_name>.json``
    for ``dataset`` (as ``nnUNetv2_move_plans_between_datasets``: dataset name, plans name and data
    identifiers are rewritten; the reader comes from the target's raw data when present)."""
    file = Path(file)
    plans = load_plans(file)
    name = dataset_name(dataset, paths)
    out_dir = paths.require("preprocessed") / name
    old_name = plans["plans_name"]
    new_name = plans_name or old_name
    target = out_dir / f"{new_name}.json"
    plans["dataset_name"] = name
    if new_name != old_name:
        for cfg in plans["configurations"].values():
            ident = cfg.get("data_identifier")
            if ident is not None:
                cfg["data_identifier"] = new_name + (ident[len(old_name):] if ident.startswith(old_name) else "_" + ident)
        plans["plans_name"] = new_name
    raw_dir = paths.raw / name if paths.raw is not None else None
    if raw_dir is not None and (raw_dir / "dataset.json").is_file():
        info = load_dataset_json(raw_dir / "dataset.json")
        for cname in plans["configurations"]:
            n = len(resolve_configuration(plans, cname, str(file))["normalization_schemes"])
            if n != info.num_channels:
                raise PlansError(f"{file}: configuration {cname!r} normalizes {n} channel(s), {info.path} declares {info.num_channels}")
        plans["image_reader_writer"] = reader_name(raw_dir, info)
        out_dir.mkdir(parents=True, exist_ok=True)
        if not (out_dir / "dataset.json").is_file():
            _copy_dataset_json(info, out_dir)
    stamp = dict(plans.get("oxunet") or {})
    stamp.update(oxunet_stamp(imported_from=str(file.resolve())))
    plans["oxunet"] = stamp
    validate_plans(plans, str(file))
    if target.exists() and target.resolve() == file.resolve():
        raise PlansError(f"{file}: is already the plans file of {name}; it can be used as it is (no import needed)")
    return write_plans(plans, target, keep_custom_configurations=False)
