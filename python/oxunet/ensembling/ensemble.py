"""nnU-Net's ``ensemble_folders``: average the ``probabilities`` of several prediction folders
and write segmentations with each case's original geometry."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import ImageIO, atomic_path
from ..errors import OxunetError


class EnsembleError(OxunetError, RuntimeError):
    """Inputs cannot be ensembled (missing cases, properties, channels or shapes that disagree)."""


def _load_json(value, fallback: Path, name: str) -> dict:
    if isinstance(value, dict):
        return value
    path = Path(value) if value is not None else fallback
    if not path.is_file():
        raise EnsembleError(f"{path}: {name} not found (pass it explicitly)")
    return json.loads(path.read_text())


def load_case_properties(stem: str | os.PathLike) -> dict:
    """The properties next to ``{stem}.npz``: ``{stem}.json`` (ours) or ``{stem}.pkl`` (nnU-Net's,
    read with the restricted unpickler)."""
    from ..io import load_restricted_pickle

    stem = str(stem)
    if os.path.isfile(stem + ".json"):
        props = json.loads(Path(stem + ".json").read_text())
        return props.get("properties", props)
    if os.path.isfile(stem + ".pkl"):
        return load_restricted_pickle(stem + ".pkl")
    raise EnsembleError(f"{stem}.npz: no properties file ({os.path.basename(stem)}.json or .pkl) next to it")


def average_probabilities(files: Sequence[str]) -> np.ndarray:
    """float32 mean of the ``probabilities`` arrays, summed in nnU-Net's order."""
    avg: np.ndarray | None = None
    for f in files:
        try:
            with np.load(f) as z:
                p = z["probabilities"]
        except (OSError, KeyError, ValueError) as e:
            raise EnsembleError(f"{f}: cannot read key 'probabilities' ({e})") from None
        if avg is None:
            avg = p.astype(np.float32, copy=False) if p.dtype != np.float32 else p.copy()
        else:
            if p.shape != avg.shape:
                raise EnsembleError(f"{f}: probabilities shape {p.shape} differs from {files[0]} {avg.shape}")
            avg += p
    if avg is None:
        raise EnsembleError("no probability files to average")
    avg /= len(files)
    return avg


def probabilities_to_segmentation(probabilities: np.ndarray, regions_class_order: Sequence[int] | None) -> np.ndarray:
    """argmax over channels, or for region datasets paint ``regions_class_order[i]`` where
    channel i > 0.5, in order (nnU-Net's ``convert_probabilities_to_segmentation``)."""
    if regions_class_order is None:
        return probabilities.argmax(0)
    if probabilities.shape[0] != len(regions_class_order):
        raise EnsembleError(f"{probabilities.shape[0]} channels but regions_class_order has {len(regions_class_order)} entries")
    seg = np.zeros(probabilities.shape[1:], dtype=np.uint16)
    for i, c in enumerate(regions_class_order):
        seg[probabilities[i] > 0.5] = c
    return seg


def _num_heads(dataset_json: dict) -> tuple[int, Sequence[int] | None]:
    from ..evaluation import labels_from_dataset_json

    labels, _, _, _ = labels_from_dataset_json(dataset_json)
    has_regions = any(isinstance(v, tuple) and len(v) > 1 for v in labels)
    if has_regions:
        rco = dataset_json.get("regions_class_order")
        if rco is None:
            raise EnsembleError("dataset.json declares regions but no regions_class_order")
        return len(labels), list(rco)
    return len(labels) + 1, None


def merge_case(files: Sequence[str], output_stem: str, file_ending: str, writer: ImageIO,
               regions_class_order, num_heads: int, save_probabilities: bool) -> None:
    props = load_case_properties(files[0][: -len(".npz")])
    probs = average_probabilities(files)
    if probs.shape[0] != num_heads:
        raise EnsembleError(f"{files[0]}: {probs.shape[0]} probability channels, dataset.json implies {num_heads}")
    writer.write_seg(probabilities_to_segmentation(probs, regions_class_order), output_stem + file_ending, props)
    if save_probabilities:
        with atomic_path(output_stem + ".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, probabilities=probs)
        clean = {k: v for k, v in props.items() if k != "class_locations"}
        with atomic_path(output_stem + ".json") as tmp:
            tmp.write_text(json.dumps({"format": "oxunet-properties", "version": 1, **clean}, indent=1, default=_jsonable))


def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _case_files(folder: str, cases: set[str] | None = None) -> set[str]:
    if not os.path.isdir(folder):
        raise EnsembleError(f"{folder}: not a folder")
    return {n for n in os.listdir(folder) if n.endswith(".npz")}


def ensemble_folders(
    input_dirs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    save_probabilities: bool = False,
    num_processes: int = 4,
    dataset_json: str | os.PathLike | dict | None = None,
    plans: str | os.PathLike | dict | None = None,
    quiet: bool = False,
) -> list[str]:
    """Averages ``<case>.npz`` (key ``probabilities``) over ``input_dirs`` (every folder must hold
    the same cases) and writes ``<case><file_ending>`` into ``output_dir`` with the reader/writer
    of the plans and the geometry of the first folder's properties. dataset.json/plans.json
    default to the first folder's. Returns the case names."""
    from .._workers import map_cases
    from ..postprocessing.folder import reader_for

    dirs = [str(d) for d in input_dirs]
    if len(dirs) < 1:
        raise EnsembleError("give at least one input folder")
    out = str(output_dir)
    if any(os.path.abspath(d) == os.path.abspath(out) for d in dirs):
        raise EnsembleError(f"{out}: the output folder must differ from the input folders")
    ds = _load_json(dataset_json, Path(dirs[0]) / "dataset.json", "dataset.json")
    plans_d = _load_json(plans, Path(dirs[0]) / "plans.json", "plans.json")
    per_dir = [_case_files(d) for d in dirs]
    every = set().union(*per_dir)
    for d, names in zip(dirs, per_dir):
        missing = sorted(every - names)
        if missing:
            raise EnsembleError(f"{d}: missing {len(missing)} probability file(s) present elsewhere: {', '.join(missing[:5])} "
                                "(all folders must contain the same .npz files)")
    if not every:
        raise EnsembleError(f"{dirs[0]}: no .npz probability files (predict with --save-probabilities)")
    cases = sorted(every)
    num_heads, rco = _num_heads(ds)
    writer = reader_for(plans_d, ds)
    os.makedirs(out, exist_ok=True)
    with atomic_path(os.path.join(out, "dataset.json")) as tmp:
        tmp.write_text(json.dumps(ds, indent=4))
    with atomic_path(os.path.join(out, "plans.json")) as tmp:
        tmp.write_text(json.dumps(plans_d, indent=4))
    jobs = [([os.path.join(d, c) for d in dirs], os.path.join(out, c[: -len(".npz")]), ds["file_ending"], writer, rco,
             num_heads, save_probabilities) for c in cases]
    map_cases(merge_case, jobs, num_processes, "ensembling", quiet=quiet)
    return [c[: -len(".npz")] for c in cases]
