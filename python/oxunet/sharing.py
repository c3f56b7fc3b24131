"""Sharing trained models: export a results folder as a zip, install one (ours or nnU-Net's,
the layouts are the same), and move plans between datasets for pretraining.

A model zip holds paths relative to the results root, as nnU-Net's ``export_pretrained_model``
writes them: ``DatasetXXX_Name/<trainer>__<plans>__<config>/{plans.json, dataset.json,
dataset_fingerprint.json, fold_N/{checkpoint_final.pth, debug.json, progress.png, validation/summary.json}}``.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from .dataset import Paths, dataset_name, load_dataset_json
from .io import atomic_path
from .errors import OxunetError

DEFAULT_CONFIGURATIONS = ("3d_lowres", "3d_fullres", "2d", "3d_cascade_fullres")
MODEL_FILES = ("plans.json", "dataset.json", "dataset_fingerprint.json")
FOLD_EXTRAS = ("debug.json", "progress.png", "network_architecture.pdf", "training_log.json")
SUMMARY_FILES = ("summary.json", "postprocessing.pkl", "postprocessing.json")
_DATASET_DIR = re.compile(r"Dataset\d{3}_.+")


class ModelSharingError(OxunetError, ValueError):
    """A model folder, zip or plans file cannot be exported, installed or moved; the message says which and why."""


def _fold_dir(fold: str | int) -> str:
    return "fold_all" if str(fold) == "all" else f"fold_{int(fold)}"


def _folds_string(folds: Sequence[str | int]) -> str:
    return "_".join(str(f) for f in folds)  # nnU-Net's folds_tuple_to_string


def model_files(
    results: Path,
    dataset: str,
    configurations: Sequence[str] | None = None,
    trainer: str = "nnUNetTrainer",
    plans: str = "nnUNetPlans",
    folds: Sequence[str | int] = (0, 1, 2, 3, 4),
    checkpoints: Sequence[str] = ("checkpoint_final.pth",),
    strict: bool = True,
    include_validation: bool = True,
    crossval_predictions: bool = False,
) -> list[Path]:
    """The files ``export_model`` puts in the zip, as absolute paths under ``results``.

    ``configurations=None`` means nnU-Net's four defaults, of which those that were trained are
    taken; named configurations, folds and checkpoints must exist unless ``strict`` is False.
    """
    root = results / dataset
    explicit = configurations is not None
    chosen: Sequence[str] = configurations if configurations is not None else DEFAULT_CONFIGURATIONS
    files: list[Path] = []
    found = 0
    for cfg in chosen:
        model = root / f"{trainer}__{plans}__{cfg}"
        if not model.is_dir():
            if explicit and strict:
                raise ModelSharingError(f"{model}: no trained model for configuration {cfg!r} (use --not-strict to skip it)")
            continue
        missing = [n for n in MODEL_FILES if not (model / n).is_file()]
        if missing:
            raise ModelSharingError(f"{model}: {', '.join(missing)} missing; this is not a complete model folder")
        fold_files: list[Path] = []
        for fold in folds:
            fdir = model / _fold_dir(fold)
            absent = [c for c in checkpoints if not (fdir / c).is_file()]
            if absent:
                if strict:
                    raise ModelSharingError(f"{fdir}: {', '.join(absent)} missing (use --not-strict to skip incomplete folds)")
                continue
            fold_files += [fdir / c for c in checkpoints]
            fold_files += [fdir / n for n in FOLD_EXTRAS if (fdir / n).is_file()]
            val = fdir / "validation"
            if crossval_predictions and val.is_dir():
                fold_files += sorted(p for p in val.iterdir() if p.is_file() and p.suffix not in (".npz", ".pkl"))
            elif include_validation and (val / "summary.json").is_file():
                fold_files.append(val / "summary.json")
        if not fold_files:
            if explicit and strict:
                raise ModelSharingError(f"{model}: none of the folds {list(folds)} has {', '.join(checkpoints)}")
            continue
        found += 1
        files += fold_files
        cv = model / f"crossval_results_folds_{_folds_string(folds)}"
        if cv.is_dir():
            files += sorted(p for p in cv.iterdir() if p.is_file() and (crossval_predictions or p.name in SUMMARY_FILES))
        files += [model / n for n in MODEL_FILES]
    if not found:
        tried = ", ".join(chosen)
        raise ModelSharingError(f"{root}: no trained model of {trainer}__{plans} for configuration(s) {tried}")
    files += _ensemble_files(root, trainer, plans, configurations or DEFAULT_CONFIGURATIONS, crossval_predictions)
    files += [root / n for n in ("inference_information.json", "inference_information.txt") if (root / n).is_file()]
    return files


def _ensemble_files(root: Path, trainer: str, plans: str, configurations: Sequence[str], everything: bool) -> list[Path]:
    # ensembles whose members are all among the exported models (nnU-Net: ensemble___<id>___<id>...___<folds>)
    ens_root = root / "ensembles"
    files: list[Path] = []
    if not ens_root.is_dir():
        return files
    for ens in sorted(p for p in ens_root.iterdir() if p.is_dir()):
        members = ens.name.split("___")[1:-1]
        wanted = {f"{trainer}__{plans}__{c}" for c in configurations}
        if members and all(m in wanted for m in members):
            files += sorted(p for p in ens.iterdir() if p.is_file() and (everything or p.name in SUMMARY_FILES))
    return files


def export_model(
    dataset: str | int,
    output_file: str | Path,
    paths: Paths,
    configurations: Sequence[str] | None = None,
    trainer: str = "nnUNetTrainer",
    plans: str = "nnUNetPlans",
    folds: Sequence[str | int] = (0, 1, 2, 3, 4),
    checkpoints: Sequence[str] = ("checkpoint_final.pth",),
    strict: bool = True,
    include_validation: bool = True,
    crossval_predictions: bool = False,
) -> list[str]:
    """Zips the trained model(s) of ``dataset`` into ``output_file`` (written atomically); returns
    the archive names. The zip installs with ``install_model`` and with nnU-Net's
    ``nnUNetv2_install_pretrained_model_from_zip``."""
    results = paths.require("results")
    name = dataset_name(dataset, paths)
    files = model_files(results, name, configurations, trainer, plans, folds, checkpoints, strict,
                        include_validation, crossval_predictions)
    output_file = Path(output_file)
    if output_file.resolve().is_relative_to((results / name).resolve()):
        raise ModelSharingError(f"{output_file}: write the zip outside the model folder it exports")
    output_file.parent.mkdir(parents=True, exist_ok=True)
    names = [f.relative_to(results).as_posix() for f in files]
    with atomic_path(output_file, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for f, arc in zip(files, names):
                zf.write(f, arc)
    return names


def _checked_members(zf: zipfile.ZipFile, source: Path) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every entry as a safe relative path under a DatasetXXX_Name folder; anything else (absolute
    paths, '..', drive letters, links: zip-slip) refuses the whole archive before a byte is written."""
    out, bad = [], []
    for info in zf.infolist():
        text = info.filename.replace("\\", "/")
        rel = PurePosixPath(text)
        is_link = stat.S_ISLNK(info.external_attr >> 16)
        if (text.startswith("/") or re.match(r"^[A-Za-z]:", text) or ".." in rel.parts or is_link
                or not rel.parts or not _DATASET_DIR.fullmatch(rel.parts[0])):
            bad.append(info.filename)
        elif not info.is_dir():
            out.append((info, rel))
    if bad:
        shown = ", ".join(repr(b) for b in bad[:5]) + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
        raise ModelSharingError(
            f"{source}: refusing to install: {len(bad)} entr{'y' if len(bad) == 1 else 'ies'} would land outside "
            f"<results>/DatasetXXX_Name/ (absolute path, '..', link or no dataset folder): {shown}")
    if not out:
        raise ModelSharingError(f"{source}: the zip holds no files")
    return out


def _same_file(path: Path, info: zipfile.ZipInfo) -> bool:
    if path.stat().st_size != info.file_size:
        return False
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc == info.CRC


def install_model(zip_file: str | Path, paths: Paths, overwrite: bool = False) -> list[Path]:
    """Extracts a model zip (ours or nnU-Net's) into the results root; returns the model folders
    (``<results>/DatasetXXX_Name/<trainer>__<plans>__<config>``) it installed.

    Existing files with other content are only replaced with ``overwrite``; each file is written
    atomically, so an interrupted install never leaves a half-written checkpoint.
    """
    zip_file = Path(zip_file)
    results = paths.require("results")
    if not zip_file.is_file():
        raise ModelSharingError(f"{zip_file}: no such file")
    try:
        zf = zipfile.ZipFile(zip_file)
    except zipfile.BadZipFile as e:
        raise ModelSharingError(f"{zip_file}: not a zip file ({e})") from None
    with zf:
        members = _checked_members(zf, zip_file)
        if not overwrite:
            clash = [str(rel) for info, rel in members if (results / rel).is_file() and not _same_file(results / rel, info)]
            if clash:
                raise ModelSharingError(f"{zip_file}: {len(clash)} file(s) already exist in {results} with other content "
                                        f"(e.g. {clash[0]}); pass --overwrite to replace them")
        for info, rel in members:
            target = results / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target, suffix="") as tmp, zf.open(info) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    models = sorted({results / rel.parts[0] / rel.parts[1] for _, rel in members if len(rel.parts) > 2})
    for model in models:
        if "__" in model.name and not (model / "plans.json").is_file():
            warnings.warn(f"{model}: installed without plans.json; it cannot be used for prediction", stacklevel=2)
    return models


def move_plans(
    source: str | int,
    target: str | int,
    source_plans: str,
    paths: Paths,
    target_plans: str | None = None,
) -> Path:
    """nnU-Net's ``move_plans_between_datasets``: the source dataset's plans, for the target dataset
    (to pretrain on one and fine-tune on the other). ``dataset_name`` and ``plans_name`` are
    rewritten, data identifiers renamed with the plans, the image reader chosen from the target's
    raw data; configurations are kept. Returns the new plans file."""
    from .planning.experiment import reader_name
    from .planning.plans import resolve_configuration

    pre = paths.require("preprocessed")
    src_name, tgt_name = dataset_name(source, paths), dataset_name(target, paths)
    target_plans = target_plans or source_plans
    src_file = pre / src_name / f"{source_plans}.json"
    if not (pre / src_name).is_dir():
        raise ModelSharingError(f"{pre / src_name}: the source dataset is not preprocessed; plan it first (oxunet plan -d {source})")
    if not src_file.is_file():
        raise ModelSharingError(f"{src_file}: source plans not found; plan the source dataset first")
    try:
        plans = json.loads(src_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelSharingError(f"{src_file}: cannot be read as JSON ({e})") from None
    raw = paths.require("raw") / tgt_name
    info = load_dataset_json(raw / "dataset.json")
    for cname in plans.get("configurations", {}):
        schemes = resolve_configuration(plans, cname, str(src_file)).get("normalization_schemes", [])
        if schemes and len(schemes) != info.num_channels:
            raise ModelSharingError(f"{src_file}: configuration {cname!r} normalizes {len(schemes)} channel(s) but "
                                    f"{info.path} declares {info.num_channels}; these plans cannot serve {tgt_name}")
    plans["dataset_name"] = tgt_name
    if target_plans != source_plans:
        for cfg in plans["configurations"].values():
            ident = cfg.get("data_identifier")
            if ident is not None:
                rest = ident[len(source_plans):] if ident.startswith(source_plans) else "_" + ident
                cfg["data_identifier"] = target_plans + rest
    plans["image_reader_writer"] = reader_name(raw, info)
    plans["plans_name"] = target_plans
    out = pre / tgt_name / f"{target_plans}.json"
    if out.resolve() == src_file.resolve():
        raise ModelSharingError(f"{out}: source and target plans are the same file; give a new -tp name")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(plans, indent=4))  # key order kept, as nnU-Net's save_json(sort_keys=False)
    return out
