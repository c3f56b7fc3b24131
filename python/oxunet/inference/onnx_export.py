"""Portable models: each fold's network as ONNX plus one JSON holding what the rest needs.

``export_onnx(model_dir, out_dir)`` writes ``out_dir/fold_N.onnx`` per fold and
``out_dir/oxunet_model.json`` (format ``oxunet-onnx-model``): the plans (whole, so preprocessing
and export run unchanged), the configuration name, dataset.json (labels/regions, channels, file
ending), the mirror axes allowed in training, the folds with their file and SHA-256, and the
input/output description. With that folder a case is predicted without torch's networks:
``oxunet predict -m out_dir --backend onnxruntime|openvino``.

The graph: opset :data:`ONNX_OPSET` (ONNX 1.13+, onnxruntime 1.14+, OpenVINO 2023+), input
``input`` ``(batch, C, *spatial)`` float32, output ``logits`` ``(batch, heads, *spatial)``
float32 (the full-resolution head only, deep supervision off). Batch and spatial axes are dynamic
where the exporter manages it (spatial sizes must then be multiples of ``spatial_multiple``, the
product of the pooling strides per axis); otherwise the patch is fixed and the manifest says so.

Every exported fold is checked before it is kept: onnxruntime's output on seeded windows must
agree with torch's within :data:`CHECK_RTOL` relative (max |difference| / max |torch logit|).
Networks the exporter cannot convert, or whose converted graph disagrees, are refused with
:class:`OnnxExportError` naming the fold, the network class and the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .model_folder import InferenceError

__all__ = ["CHECK_RTOL", "MANIFEST_NAME", "ONNX_OPSET", "OnnxExportError", "OnnxModel", "export_network_onnx",
           "export_onnx", "is_onnx_model_dir", "load_onnx_model"]

ONNX_OPSET = 18
MANIFEST_NAME = "oxunet_model.json"
MANIFEST_FORMAT = "oxunet-onnx-model"
CHECK_RTOL = 1e-3
EXPORTERS = ("dynamo", "torchscript")


class OnnxExportError(InferenceError):
    """A network cannot be converted to ONNX (or its conversion disagrees with torch)."""


def require_onnx() -> None:
    """Imports onnx and onnxruntime or says how to install them (the ``onnx`` extra)."""
    missing = []
    for mod in ("onnx", "onnxruntime"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise OnnxExportError(f"ONNX export needs {' and '.join(missing)}: pip install 'oxunet[onnx]'")


def spatial_multiple(architecture: dict, ndim: int) -> list[int]:
    """Per spatial axis, the product of the encoder's strides: sizes a U-Net accepts are its multiples."""
    strides = architecture.get("arch_kwargs", {}).get("strides") or []
    out = [1] * ndim
    for s in strides:
        s = [int(s)] * ndim if isinstance(s, (int, float)) else [int(v) for v in s]
        out = [a * b for a, b in zip(out, s)]
    return out


def _torch_export(net, example, path: Path, opset: int, exporter: str, dynamic: bool) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and tracer chatter
        if exporter == "dynamo":
            shapes = None
            if dynamic:
                d = torch.export.Dim.DYNAMIC
                shapes = ({a: d for a in [0, *range(2, example.ndim)]},)
            prog = torch.onnx.export(net, (example,), dynamo=True, opset_version=opset, input_names=["input"],
                                     output_names=["logits"], dynamic_shapes=shapes, verbose=False)
            assert prog is not None  # dynamo=True always returns the program
            prog.save(str(path))
        else:
            axes = None
            if dynamic:
                names = {0: "batch", **{i: f"spatial_{i - 2}" for i in range(2, example.ndim)}}
                axes = {"input": names, "logits": names}
            torch.onnx.export(net, (example,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=["logits"], dynamic_axes=axes)


def check_against_torch(net, onnx_path: Path, example_shapes, seed: int = 0) -> float:
    """Max relative difference (max |ort - torch| / max |torch|) over seeded inputs of `example_shapes`."""
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    for shape in example_shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).float().numpy()
        got = sess.run(["logits"], {"input": x})[0]
        if got.shape != ref.shape:
            return float("inf")
        worst = max(worst, float(np.abs(got - ref).max() / max(float(np.abs(ref).max()), 1e-12)))
    return worst


def export_network_onnx(net, patch_size, num_input_channels: int, path: Path, *, multiple=None,
                        opset: int = ONNX_OPSET, exporter: str = "dynamo", what: str = "network") -> dict:
    """Exports one torch network (eval mode, deep supervision off) to `path` and checks it.

    Tries dynamic batch and spatial axes first, then a fixed patch; returns ``{"dynamic": bool,
    "max_relative_difference": float}``. Raises :class:`OnnxExportError` when neither converts
    or the converted graph disagrees with torch by more than :data:`CHECK_RTOL`."""
    import torch

    require_onnx()
    if exporter not in EXPORTERS:
        raise OnnxExportError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    patch = [int(p) for p in patch_size]
    example = torch.zeros((1, num_input_channels, *patch), dtype=torch.float32)
    multiple = list(multiple) if multiple else [1] * len(patch)
    # a second window shape (batch 2, each axis one multiple bigger) proves the dynamic axes work
    bigger = (2, num_input_channels, *(p + m for p, m in zip(patch, multiple)))
    name = type(net).__name__
    errors = []
    for dynamic in (True, False):
        try:
            _torch_export(net, example, path, opset, exporter, dynamic)
        except Exception as e:  # the exporters raise many kinds; all mean "cannot convert"
            errors.append(f"{'dynamic' if dynamic else 'static'} axes: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            continue
        try:
            diff = check_against_torch(net, path, [tuple(example.shape), bigger] if dynamic else [tuple(example.shape)])
        except Exception as e:
            errors.append(f"onnxruntime cannot run the {'dynamic' if dynamic else 'static'} graph: "
                          f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
            continue
        if diff <= CHECK_RTOL:
            return {"dynamic": dynamic, "max_relative_difference": diff}
        errors.append(f"{'dynamic' if dynamic else 'static'} axes: ONNX output differs from torch by {diff:.2e} relative "
                      f"(limit {CHECK_RTOL:g})")
    path.unlink(missing_ok=True)
    raise OnnxExportError(f"{what}: network {name} cannot be converted to ONNX (opset {opset}, {exporter} exporter): "
                          + "; ".join(errors))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_onnx(model_dir, output_dir, folds=None, checkpoint: str = "checkpoint_final.pth", *,
                configuration: str | None = None, opset: int = ONNX_OPSET, exporter: str = "dynamo",
                quantize: str | None = None, calibration_dir=None, calibration_cases: int = 16) -> Path:
    """Exports a trained-model folder (oxunet's or nnU-Net v2's) to `output_dir`; returns the manifest path.

    `folds`: None = every ``fold_N`` with the checkpoint (as prediction). ``quantize="int8"`` also
    writes ``fold_N.int8.onnx`` per fold, calibrated on the first `calibration_cases` raw cases of
    `calibration_dir` (see :mod:`oxunet.inference.quantize`)."""
    from ..io import atomic_path
    from .predictor import Predictor

    require_onnx()
    if quantize not in (None, "int8"):
        raise OnnxExportError(f"quantize must be None or 'int8', got {quantize!r}")
    if quantize and calibration_dir is None:
        raise OnnxExportError("--quantize int8 needs --calibration DIR (raw images CASE_0000<ending> to calibrate on)")
    import torch

    pred = Predictor.from_model_folder(model_dir, folds, checkpoint=checkpoint, configuration=configuration,
                                       device="cpu", precision="fp32", tta="none", quiet=True)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    arch = pred.config["architecture"]
    patch = [int(p) for p in pred.config["patch_size"]]
    multiple = spatial_multiple(arch, len(patch))
    entries = []
    for fold, net in zip(pred.folds, pred.networks):
        target = output_dir / f"fold_{fold}.onnx"
        with tempfile.TemporaryDirectory(dir=output_dir) as tmp:  # written whole or not at all
            tmp_path = Path(tmp) / target.name
            info = export_network_onnx(net, patch, pred.num_input_channels, tmp_path, multiple=multiple, opset=opset,
                                       exporter=exporter, what=f"{model_dir} fold {fold}")
            os.replace(tmp_path, target)
        entries.append({"fold": fold, "file": target.name, "sha256": _sha256(target), **info})
    quantization = _quantize_folds(pred, output_dir, entries, calibration_dir, calibration_cases) if quantize else None
    dynamic = all(e["dynamic"] for e in entries)
    ndim = len(patch)
    manifest = {
        "format": MANIFEST_FORMAT, "version": 1, "opset": opset, "exporter": exporter,
        "torch_version": torch.__version__, "source_model": str(Path(model_dir).resolve()), "checkpoint": checkpoint,
        "configuration": pred.configuration, "trainer_name": pred.trainer_name,
        "mirror_axes": list(pred.allowed_mirror_axes) if pred.allowed_mirror_axes is not None else None,
        "input": {"name": "input", "num_channels": pred.num_input_channels, "patch_size": patch,
                  "shape": ["batch", pred.num_input_channels, *(f"spatial_{i}" if dynamic else p
                                                                  for i, p in enumerate(patch))],
                  "dynamic_spatial_axes": dynamic, "spatial_multiple": multiple, "dtype": "float32"},
        "output": {"name": "logits", "num_heads": pred.dataset.num_segmentation_heads, "dtype": "float32",
                   "ndim": ndim + 2},
        "check": {"rtol": CHECK_RTOL, "against": "torch fp32 on seeded windows"},
        "folds": entries, "plans": getattr(pred.plans, "raw", pred.plans),  # typed plans keep their JSON dict
        "dataset_json": pred.dataset_json,
    }
    if quantization is not None:  # optional: version-1 readers that ignore it still run the fp32 folds
        manifest["quantization"] = quantization
    path = output_dir / MANIFEST_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return path


def _quantize_folds(pred, output_dir: Path, entries: list[dict], calibration_dir, calibration_cases: int) -> dict:
    """Writes each fold's int8 graph beside its fp32 one (adding ``int8`` to its entry) and
    returns the manifest's ``quantization`` record."""
    import onnxruntime

    from .quantize import (INT8_ROUTE, WINDOWS_PER_CASE, calibration_windows, int8_file_name, quantize_fold_int8,
                           select_calibration_cases)

    cases = select_calibration_cases(calibration_dir, pred, calibration_cases)
    windows = calibration_windows(pred, cases)
    for entry in entries:
        target = output_dir / int8_file_name(entry["file"])
        info = quantize_fold_int8(output_dir / entry["file"], target, windows)
        entry["int8"] = {"file": target.name, "sha256": _sha256(target),
                         "calibration_argmax_agreement": info["argmax_agreement"]}
    return {"precision": "int8", "route": {**INT8_ROUTE, "onnxruntime_version": onnxruntime.__version__},
            "calibration": {"folder": str(Path(calibration_dir).resolve()), "cases": sorted(cases),
                            "windows": len(windows), "max_windows_per_case": WINDOWS_PER_CASE, "seed": 0}}


# --------------------------------------------------------------------------------------------
# reading


@dataclass
class OnnxModel:
    """An exported model folder: the manifest and the fold files."""

    path: Path
    manifest: dict

    @property
    def plans(self) -> dict:
        return self.manifest["plans"]

    @property
    def dataset_json(self) -> dict:
        return self.manifest["dataset_json"]

    @property
    def configuration(self) -> str:
        return self.manifest["configuration"]

    @property
    def mirror_axes(self):
        axes = self.manifest.get("mirror_axes")
        return tuple(axes) if axes is not None else None

    @property
    def folds(self) -> list:
        return [e["fold"] for e in self.manifest["folds"]]

    def fold_file(self, fold) -> Path:
        for e in self.manifest["folds"]:
            if str(e["fold"]) == str(fold):
                return self.path / e["file"]
        raise InferenceError(f"{self.path}: no fold {fold} exported (folds: {self.folds})")

    def int8_fold_file(self, fold) -> Path:
        """The fold's int8 graph; an error naming the folder and fold when the export has none."""
        self.fold_file(fold)  # unknown folds: the same error as fp32
        entry = next(e for e in self.manifest["folds"] if str(e["fold"]) == str(fold))
        if "int8" not in entry:
            raise InferenceError(f"{self.path}: fold {fold} has no int8 model; re-export with "
                                 "`oxunet export-model --format onnx ... --quantize int8 --calibration DIR`")
        path = self.path / entry["int8"]["file"]
        if not path.is_file():
            raise InferenceError(f"{path}: int8 ONNX file of fold {fold} missing")
        return path


def is_onnx_model_dir(path) -> bool:
    return path is not None and (Path(path) / MANIFEST_NAME).is_file()


def load_onnx_model(path, folds=None) -> OnnxModel:
    """Reads ``path/oxunet_model.json``; `folds` (None = all exported) are checked to exist."""
    path = Path(path)
    mf = path / MANIFEST_NAME
    if not mf.is_file():
        raise InferenceError(f"{path}: no {MANIFEST_NAME} (not a folder written by `oxunet export-model --format onnx`)")
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise InferenceError(f"{mf}: cannot be parsed as JSON ({e})") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise InferenceError(f"{mf}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    model = OnnxModel(path, manifest)
    if folds is not None:
        folds = [folds] if isinstance(folds, (int, str)) else list(folds)
        keep = []
        for f in folds:
            file = model.fold_file(f)
            if not file.is_file():
                raise InferenceError(f"{file}: ONNX file of fold {f} missing")
            keep.append(next(e for e in manifest["folds"] if str(e["fold"]) == str(f)))
        manifest = {**manifest, "folds": keep}
        model = OnnxModel(path, manifest)
    return model
