"""Postprocessing steps, their JSON form and the translation of nnU-Net's ``postprocessing.pkl``.

A step is a dict ``{"op": ..., **arguments}``:

* ``{"op": "keep_largest_component", "labels_or_regions": [1, 2]}`` — nnU-Net's
  ``remove_all_but_largest_component_from_segmentation``: the union of the named labels keeps
  only its largest component(s) (full connectivity); other voxels of the union become 0.
* ``{"op": "remove_small_components", "labels_or_regions": [3], "min_size": 50, "replace_with": 1}``
  — components of the union smaller than ``min_size`` voxels become ``replace_with`` (0 =
  remove; another label = relabel, as BraTS entries turn small enhancing tumour into necrosis).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ..errors import OxunetError

FORMAT = "oxunet.postprocessing"
VERSION = 1

NNUNET_FN_NAMES = {
    "remove_all_but_largest_component_from_segmentation": "keep_largest_component",
}
_NNUNET_MODULE = "nnunetv2.postprocessing.remove_connected_components"


class PostprocessingError(OxunetError, ValueError):
    """A postprocessing file or step is malformed."""


def _labels_arg(value, where: str):
    """labels_or_regions as the kernels read it: an int, a tuple (region) or a list of ints/tuples."""
    if isinstance(value, bool):
        raise PostprocessingError(f"{where}: labels_or_regions must be integers, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (list, tuple)):
        out = [tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else int(v) for v in value]
        return tuple(out) if isinstance(value, tuple) and all(isinstance(v, int) for v in out) else out
    raise PostprocessingError(f"{where}: labels_or_regions must be an int or a list, got {value!r}")


def check_step(step: dict, where: str = "step") -> dict:
    """A validated copy of ``step`` with labels in kernel form."""
    if not isinstance(step, dict) or "op" not in step:
        raise PostprocessingError(f"{where}: expected an object with an 'op', got {step!r}")
    op = step["op"]
    if op == "keep_largest_component":
        allowed = {"op", "labels_or_regions", "background_label"}
    elif op == "remove_small_components":
        allowed = {"op", "labels_or_regions", "min_size", "replace_with"}
        if not isinstance(step.get("min_size"), int) or step["min_size"] < 0:
            raise PostprocessingError(f"{where}: remove_small_components needs an integer min_size >= 0")
    else:
        raise PostprocessingError(f"{where}: unknown op {op!r} (keep_largest_component, remove_small_components)")
    extra = set(step) - allowed
    if extra or "labels_or_regions" not in step:
        raise PostprocessingError(f"{where}: {op} takes {sorted(allowed - {'op'})}, got {sorted(set(step) - {'op'})}")
    out = dict(step)
    out["labels_or_regions"] = _labels_arg(step["labels_or_regions"], where)
    return out


def _as_label_dtype(seg: np.ndarray) -> np.ndarray:
    if seg.dtype in (np.uint8, np.uint16, np.int8, np.int16, np.int32):
        return seg
    top = int(seg.max()) if seg.size else 0
    return seg.astype(np.uint8 if top < 256 else np.uint16)


def apply_steps(seg: np.ndarray, steps: Sequence[dict]) -> np.ndarray:
    """Applies ``steps`` in order to a 2D/3D label map (a new array; ``seg`` is untouched)."""
    from ..kernels import remove_all_but_largest_component, remove_small_components

    out = _as_label_dtype(seg)
    for i, step in enumerate(steps):
        step = check_step(step, f"step {i}")
        if step["op"] == "keep_largest_component":
            out = remove_all_but_largest_component(out, step["labels_or_regions"], step.get("background_label", 0))
        else:
            out = remove_small_components(out, step["labels_or_regions"], step["min_size"], step.get("replace_with", 0))
    return out


def step_to_json(step: dict) -> dict:
    out = dict(step)
    lor = out["labels_or_regions"]
    if isinstance(lor, (list, tuple)):
        out["labels_or_regions"] = [list(v) if isinstance(v, tuple) else v for v in lor]
    return out


def steps_from_nnunet(pp_fns: Sequence, pp_kwargs: Sequence[dict], source: str = "postprocessing.pkl") -> list[dict]:
    """nnU-Net's ``(functions, kwargs)`` as steps (functions already mapped to op names)."""
    steps = []
    for i, (fn, kwargs) in enumerate(zip(pp_fns, pp_kwargs)):
        if fn not in NNUNET_FN_NAMES.values():
            raise PostprocessingError(f"{source}: step {i} uses an unsupported function {fn!r}")
        steps.append(check_step({"op": fn, **kwargs}, f"{source}: step {i}"))
    return steps


def load_nnunet_postprocessing_pkl(path: str | os.PathLike) -> list[dict]:
    """Reads nnU-Net's postprocessing.pkl with the restricted unpickler (its function references
    become op names; nothing from nnunetv2 is imported or run)."""
    from ..io import load_restricted_pickle

    stand_ins = {(_NNUNET_MODULE, name): op for name, op in NNUNET_FN_NAMES.items()}
    data = load_restricted_pickle(path, stand_ins)
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise PostprocessingError(f"{path}: expected nnU-Net's (functions, kwargs) tuple")
    return steps_from_nnunet(data[0], data[1], str(path))


def load_postprocessing(path: str | os.PathLike) -> list[dict]:
    """Steps from our postprocessing.json, nnU-Net's postprocessing.json (``postprocessing_fns``)
    or nnU-Net's postprocessing.pkl."""
    path = Path(path)
    if path.suffix == ".pkl":
        return load_nnunet_postprocessing_pkl(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PostprocessingError(f"{path}: cannot read postprocessing JSON ({e})") from None
    if "steps" in data:
        if data.get("format") != FORMAT or data.get("version", 0) > VERSION:
            raise PostprocessingError(f"{path}: not an oxunet postprocessing file of version <= {VERSION}")
        return [check_step(s, f"{path}: step {i}") for i, s in enumerate(data["steps"])]
    if "postprocessing_fns" in data:  # nnU-Net's json twin of the pkl
        fns = [NNUNET_FN_NAMES.get(n, n) for n in data["postprocessing_fns"]]
        return steps_from_nnunet(fns, data["postprocessing_kwargs"], str(path))
    raise PostprocessingError(f"{path}: has neither 'steps' nor 'postprocessing_fns'")


def postprocessing_document(steps: Sequence[dict], **extra) -> dict:
    """Our postprocessing.json: versioned steps plus nnU-Net's fields (``postprocessing_fns``,
    ``postprocessing_kwargs`` for the steps nnU-Net knows)."""
    json_steps = [step_to_json(check_step(s)) for s in steps]
    reverse = {v: k for k, v in NNUNET_FN_NAMES.items()}
    doc = {"format": FORMAT, "version": VERSION, "steps": json_steps}
    if all(s["op"] in reverse for s in json_steps):
        doc["postprocessing_fns"] = [reverse[s["op"]] for s in json_steps]
        doc["postprocessing_kwargs"] = [{k: v for k, v in s.items() if k != "op"} for s in json_steps]
    doc.update(extra)
    return doc
