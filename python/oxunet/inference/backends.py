"""Network runtimes behind the sliding window: torch, onnxruntime, OpenVINO (CPU).

Only the network call differs between backends: preprocessing, the Gaussian aggregation and the
export stay the Rust kernels. An ONNX backend network is a callable that takes and returns torch
tensors ``(N, C, *spatial)`` (zero-copy through numpy on the CPU), so
:class:`~oxunet.inference.sliding.SlidingWindow` runs it exactly as it runs a torch module (flips,
fold averaging, streaming). onnxruntime and OpenVINO are imported when a backend is built
(extras ``oxunet[onnx]`` / ``oxunet[openvino]``).

Precision per runtime (``--precision``):

============  ==================================  ==================================================  ===================================
backend       fp32                                bf16 / fp16 / auto                                  int8
============  ==================================  ==================================================  ===================================
torch         fp32                                autocast bf16 / fp16; auto: bf16 on CPUs with       refused (no int8 path; use an ONNX
                                                  native bf16 (AVX512-BF16/AMX), else fp32            export with an ONNX runtime)
onnxruntime   fp32 (its CPU provider's kernels)   refused: the CPU provider has no bf16/fp16          ``fold_N.int8.onnx`` (QDQ, fused
                                                  convolutions; auto: fp32                            into QLinearConv)
openvino      ``INFERENCE_PRECISION_HINT`` f32    bf16 / f16 hints (bf16 needs AVX512-BF16/AMX, f16   ``fold_N.int8.onnx``: int8 convs
                                                  AVX512-FP16/AMX-FP16); auto: bf16 where native,     (VNNI where present), the rest f32
                                                  else f32 (OpenVINO's own default would pick bf16
                                                  silently; we always set the hint)
============  ==================================  ==================================================  ===================================

int8 runs only the int8 graphs of an ONNX export made with ``oxunet export-model --format onnx
--quantize int8 --calibration DIR`` (calibration is an explicit export step; a trained-model
folder is not quantised on the fly). See :mod:`oxunet.inference.quantize`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .model_folder import InferenceError
from .runtime import PRECISIONS, PrecisionError, cpu_has_native_bf16
from .signal_stack import keep_signal_stack

__all__ = ["BACKENDS", "BACKEND_PRECISIONS", "OnnxRuntimeNetwork", "OpenVinoNetwork", "RuntimeNetwork", "backend_networks", "predictor_with_backend",
           "resolve_backend_precision"]

BACKENDS = ("torch", "onnxruntime", "openvino")
# prediction's precisions: training's (runtime.PRECISIONS, which must not gain int8) plus int8
BACKEND_PRECISIONS = (*PRECISIONS, "int8")


def _cpu_flags(cpuinfo: str | None) -> set[str]:
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and ":" in line:
            flags.update(line.split(":", 1)[1].split())
    return flags


def resolve_backend_precision(backend: str, precision: str, cpuinfo: str | None = None) -> str:
    """The precision `backend` runs at for a requested `precision` (see the module table)."""
    if backend not in BACKENDS:
        raise InferenceError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if precision not in BACKEND_PRECISIONS:
        raise PrecisionError(f"precision must be one of {BACKEND_PRECISIONS}, got {precision!r}")
    if precision == "int8":
        if backend == "torch":
            raise PrecisionError("--precision int8 runs the int8 ONNX export (`oxunet export-model --format onnx "
                                 "--quantize int8 --calibration DIR`) with --backend openvino or onnxruntime; "
                                 "torch has no int8 path")
        return "int8"
    if backend == "onnxruntime":
        if precision in ("auto", "fp32"):
            return "fp32"
        raise PrecisionError(f"--backend onnxruntime runs fp32 only on the CPU (its CPU provider has no {precision} "
                             f"convolutions); use --precision fp32, or --backend openvino / torch for {precision}")
    if backend == "openvino":
        if precision == "auto":
            return "bf16" if cpu_has_native_bf16(cpuinfo) else "fp32"
        if precision == "fp16" and not _cpu_flags(cpuinfo) & {"avx512_fp16", "amx_fp16"}:
            raise PrecisionError("--backend openvino --precision fp16 needs a CPU with AVX512-FP16 or AMX-FP16; "
                                 "use fp32 or bf16")
        return precision
    return precision  # torch: resolved by runtime.resolve_precision with the device


class RuntimeNetwork:
    """What SlidingWindow needs of a network: ``net(x)`` on torch tensors, ``eval()``, ``to()``."""

    backend = ""

    def eval(self):
        return self

    def to(self, *args, **kwargs):  # device / memory format: the runtime decides its own layout
        return self

    def run_numpy(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x):
        import torch

        arr = np.ascontiguousarray(x.detach().cpu().float().numpy())
        return torch.from_numpy(self.run_numpy(arr))


class OnnxRuntimeNetwork(RuntimeNetwork):
    """An ONNX file run by onnxruntime's CPU execution provider with `threads` intra-op threads."""

    backend = "onnxruntime"

    def __init__(self, path, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise InferenceError("--backend onnxruntime needs onnxruntime: pip install 'oxunet[onnx]'") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or _torch_threads())
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run_numpy(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]


class OpenVinoNetwork(RuntimeNetwork):
    """An ONNX file compiled by OpenVINO for the CPU at `precision` ('fp32', 'bf16', 'fp16', 'int8').

    The file has dynamic batch and spatial axes; OpenVINO's CPU plugin runs a graph compiled for one
    static shape 10-20 % faster (kernels and memory chosen once), and a sliding window feeds one
    shape only (the patch, `tta_batch` copies). So each new input shape is compiled on first use,
    up to ``MAX_STATIC_SHAPES``; past that, one dynamic compilation serves every other shape.

    int8: the file is a QDQ graph; its quantised convolutions run in int8 whatever the hint, and
    the f32 hint keeps the layers left in float (instance norm) in f32, as calibrated."""

    backend = "openvino"
    HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
    MAX_STATIC_SHAPES = 4

    def __init__(self, path, precision: str = "fp32", threads: int | None = None):
        try:
            import openvino as ov
        except ImportError:
            raise InferenceError("--backend openvino needs openvino: pip install 'oxunet[openvino]'") from None
        self._ov = ov
        self.path = Path(path)
        self.config = {"INFERENCE_PRECISION_HINT": self.HINTS[precision],
                       "INFERENCE_NUM_THREADS": int(threads or _torch_threads()),
                       "PERFORMANCE_HINT": "LATENCY"}
        # compiling swaps in OpenVINO's own alternate signal stack on this thread, which can be left
        # dangling later and turn the next Python signal handler into a SIGSEGV (signal_stack.py)
        with keep_signal_stack():
            self.core = ov.Core()
            self.model = self.core.read_model(str(path))  # also checks the file now, not at the first window
        self._requests: dict[tuple[int, ...] | None, tuple[Any, Any]] = {}

    def _request(self, shape: tuple[int, ...]):
        """(infer request, output port) compiled for `shape`, or for any shape once the static ones are used up."""
        key: tuple[int, ...] | None = shape
        if key not in self._requests:
            static = sum(k is not None for k in self._requests)
            if static >= self.MAX_STATIC_SHAPES:
                key = None
        if key not in self._requests:
            with keep_signal_stack():
                model = self.model.clone()
                if key is not None:
                    model.reshape({model.inputs[0]: self._ov.PartialShape(list(key))})
                compiled = self.core.compile_model(model, "CPU", self.config)
                self._requests[key] = (compiled.create_infer_request(), compiled.output(0))
        return self._requests[key]

    def run_numpy(self, x: np.ndarray) -> np.ndarray:
        request, output = self._request(tuple(int(d) for d in x.shape))
        res = request.infer({0: x})
        return np.array(res[output], dtype=np.float32, copy=True)  # the request reuses its buffer


def _torch_threads() -> int:
    """torch's intra-op thread count (what --threads and OXUNET_NUM_THREADS set); without torch, the usable cores."""
    from .runtime import torch_available

    if torch_available():
        import torch

        return max(1, torch.get_num_threads())
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def backend_networks(backend: str, onnx_files, precision: str, threads: int | None = None) -> list:
    """One runtime network per ONNX file."""
    if backend == "onnxruntime":
        return [OnnxRuntimeNetwork(f, threads) for f in onnx_files]
    if backend == "openvino":
        return [OpenVinoNetwork(f, precision, threads) for f in onnx_files]
    raise InferenceError(f"backend {backend!r} does not run ONNX files")


def onnx_files_for_model_folder(pred, out_dir: str | os.PathLike, exporter: str = "torchscript") -> list[Path]:
    """Converts the torch networks of a built predictor to ONNX files in `out_dir` (same checks
    as ``oxunet export-model --format onnx``), for predicting a torch model folder with another runtime."""
    from .onnx_export import export_network_onnx, spatial_multiple

    patch = [int(p) for p in pred.config["patch_size"]]
    multiple = spatial_multiple(pred.config["architecture"], len(patch))
    files = []
    for fold, net in zip(pred.folds or range(len(pred.networks)), pred.networks):
        path = Path(out_dir) / f"fold_{fold}.onnx"
        export_network_onnx(net, patch, pred.num_input_channels, path, multiple=multiple, exporter=exporter,
                            what=f"fold {fold}")
        files.append(path)
    return files


def predictor_with_backend(pred, backend: str, precision: str = "auto"):
    """`pred` (a torch predictor on the CPU) with its networks swapped for `backend`'s, converted
    through ONNX files in a temporary folder (the runtimes hold the graphs in memory once loaded)."""
    import tempfile

    from .sliding import SlidingWindow

    run_precision = resolve_backend_precision(backend, precision)
    with tempfile.TemporaryDirectory(prefix="oxunet-onnx-") as tmp:
        nets = backend_networks(backend, onnx_files_for_model_folder(pred, tmp), run_precision)
    pred.networks = nets
    pred.sliding = SlidingWindow(nets, pred.config["patch_size"], pred.dataset.num_segmentation_heads, pred.mirror_axes,
                                 pred.device, "fp32", tta_batch=pred.sliding.tta_batch)
    pred.sliding.has_regions = pred.dataset.has_regions
    pred.backend, pred.precision = backend, run_precision
    return pred
