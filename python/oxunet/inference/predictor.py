"""The predictor: nnU-Net's ``nnUNetPredictor`` (spec §14) on oxunet's kernels.

One :class:`Predictor` holds the networks of the requested folds, the plan and dataset.json; it
preprocesses raw cases with the plan (as training did), runs the sliding window with mirroring
TTA and fold averaging, and exports to the input's geometry. Files are optional: arrays and
SimpleITK images go in and come out (:meth:`predict_array`, :meth:`predict_sitk`).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import SLIDING_WINDOW_STEP_SIZE
from ..dataset import DatasetInfo
from ..planning.plans import resolve_configuration
from .export import (ExportPlan, StreamingExport, cast_into, export_logits, save_probabilities, streaming_exact,
                     streaming_exact_nearest, write_segmentation)
from .model_folder import InferenceError, ModelFolder, load_model_folder
from .runtime import StageTimes, peak_rss_bytes, reset_peak_rss, resolve_device, resolve_precision
from .sliding import SlidingWindow, mirror_combinations

__all__ = ["PredictionResult", "Predictor"]

DEFAULT_MEMORY_BUDGET = 1 << 30  # logits bytes above which streaming="auto" streams (OXUNET_PREDICT_MEMORY_BUDGET)
# tta_batch="auto" on the CPU: mirrored copies per network call while the first stage's activations
# (patch voxels x features x 4 bytes x ~3 live tensors per copy) stay under this
TTA_BATCH_BUDGET = 1 << 30


@dataclass
class PredictionResult:
    """One predicted case. ``segmentation`` has the input's axis order and shape; ``probabilities``
    is ``(C, *input shape)`` when requested. ``times`` holds seconds per stage (preprocessing,
    network, aggregation, export, total); ``peak_rss_bytes`` the process's peak resident memory
    while the case ran (the whole process's peak when the OS cannot reset it)."""

    segmentation: np.ndarray
    probabilities: np.ndarray | None = None
    properties: dict = field(default_factory=dict, repr=False)
    times: dict = field(default_factory=dict)
    peak_rss_bytes: int = 0
    streaming: bool = False
    streaming_note: str = ""
    output_file: Path | None = None
    peak_gpu_memory_bytes: int | None = None
    on_device: bool = False
    uncertainty: dict | None = field(default=None, repr=False)  # name → float32 map (input geometry)
    uncertainty_summary: dict | None = None

    def report(self) -> dict:
        return {"output_file": str(self.output_file) if self.output_file else None,
                "seconds": {k: round(v, 4) for k, v in self.times.items()}, "peak_rss_bytes": self.peak_rss_bytes,
                "peak_gpu_memory_bytes": self.peak_gpu_memory_bytes, "on_device": self.on_device,
                "streaming": self.streaming, "streaming_note": self.streaming_note,
                "shape": list(self.segmentation.shape),
                **({"uncertainty": self.uncertainty_summary} if self.uncertainty_summary is not None else {})}


def _dataset_info(dataset_json) -> DatasetInfo:
    if isinstance(dataset_json, DatasetInfo):
        return dataset_json
    if isinstance(dataset_json, (str, os.PathLike)):
        from ..dataset import load_dataset_json

        return load_dataset_json(dataset_json)
    from ..preprocessing.pipeline import _dataset_info as from_mapping

    return from_mapping(dataset_json)


def _resolve_tta(tta, allowed: tuple[int, ...] | None) -> tuple[int, ...]:
    allowed = tuple(allowed) if allowed else ()
    if tta in (None, "none", False) or tta == ():
        return ()
    if tta in ("all", True):
        return allowed
    if isinstance(tta, str):
        tta = [int(t) for t in tta.replace(",", " ").split()]
    axes = tuple(sorted({int(a) for a in tta}))
    bad = [a for a in axes if a not in allowed]
    if bad:
        raise InferenceError(f"tta: mirror axes {list(bad)} were not allowed in training (allowed: {list(allowed)})")
    return axes


class Predictor:
    """Predicts cases with the networks of a trained configuration (one or several folds).

    Use :meth:`from_model_folder` (a folder trained by oxunet or nnU-Net v2) or
    :meth:`from_networks` (networks / state dicts in memory, e.g. the trainer's final validation).

    Parameters (keyword)
    --------------------
    device : 'auto' (cuda, else mps, else cpu), 'cpu', 'cuda', 'mps' or a torch.device.
    precision : 'auto' (fp16 autocast on CUDA, bf16 on CPUs with native bf16, else fp32), 'fp32',
        'bf16', 'fp16'. Parity with nnU-Net on CPU: 'fp32'.
    step_size : sliding-window step as a fraction of the patch (nnU-Net: 0.5).
    tta : 'all' (every axis allowed in training; nnU-Net's default), 'none', or a tuple of axes.
    accumulator_dtype : 'float16' (nnU-Net's accumulators: its exact sums, half the memory) or
        'float32' (more precise).
    channels_last : 'auto' (on for bf16 on CPU, where oneDNN's channels-last convolutions are
        about twice as fast), True or False.
    streaming : 'auto' (stream when the logits would exceed `memory_budget` bytes and slab-wise
        export is exact), True (stream whenever exact), False.
    tta_batch : mirrored copies of a window per network call: 'auto' (on the CPU as many as keep the
        first stage's activations under 1 GiB, e.g. all 8 for Hippocampus; 1 elsewhere), or a
        number (1: nnU-Net's one at a time). The same members either way.
    export_on : 'auto' (the device on CUDA, else the CPU), 'device' or 'cpu'. On the device, the
        preprocessing's resampling, the Gaussian aggregation and the export's resampling and
        argmax run in torch where the network runs (:mod:`oxunet.inference.on_device`); 'cpu'
        keeps the Rust kernels (per-window outputs come back to the host).
    """

    def __init__(self, plans: dict, configuration: str, dataset_json, networks: Sequence, mirror_axes, *,
                 device="auto", precision: str = "auto", step_size: float = SLIDING_WINDOW_STEP_SIZE, tta="all", quiet: bool = False,
                 accumulator_dtype: str = "float16", streaming="auto", memory_budget: int | None = None,
                 trainer_name: str = "nnUNetTrainer", folds: Sequence = (), channels_last="auto",
                 export_on: str = "auto", architecture: Mapping | None = None, tta_batch="auto"):
        if not 0 < float(step_size) <= 1:
            raise InferenceError(f"step_size must be in (0, 1], got {step_size}")
        typed = plans if hasattr(plans, "configuration") and hasattr(plans, "raw") else None  # planning.model.Plans
        if typed is not None:
            plans = typed.raw
        self.plans = plans
        self.configuration = configuration
        self.config = resolve_configuration(plans, configuration)
        # the network a checkpoint records (trainer variants such as BN or a plugin network), else the plans'
        self.architecture = dict(architecture) if architecture else self.config["architecture"]
        self.dataset = _dataset_info(dataset_json)
        if self.dataset.raw:
            self.dataset_json = dict(self.dataset.raw)
        else:
            self.dataset_json = dict(dataset_json) if isinstance(dataset_json, Mapping) else {}
        self.device = device if not isinstance(device, str) else resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.step_size = float(step_size)
        self.allowed_mirror_axes = tuple(mirror_axes) if mirror_axes is not None else None
        self.mirror_axes = _resolve_tta(tta, self.allowed_mirror_axes)
        self.quiet = quiet
        self.accumulator_dtype = accumulator_dtype
        self.streaming = streaming
        if export_on not in ("auto", "device", "cpu"):
            raise InferenceError(f"export_on must be 'auto', 'device' or 'cpu', got {export_on!r}")
        self.export_on = export_on
        self.on_device = export_on == "device" or (export_on == "auto" and self.device.type == "cuda")
        env_budget = os.environ.get("OXUNET_PREDICT_MEMORY_BUDGET")
        self.memory_budget = int(memory_budget if memory_budget is not None else env_budget or DEFAULT_MEMORY_BUDGET)
        self.trainer_name = trainer_name
        self.folds = list(folds)
        self.export_plan = ExportPlan.from_plans(typed or plans, configuration, self.dataset)
        from ..preprocessing.configuration import PreprocessingPlan

        self.preprocessing_plan = PreprocessingPlan.from_plans(typed or plans, configuration)
        self.previous_stage = self.config.get("previous_stage")
        self.num_input_channels = self.dataset.num_channels + (
            len(self.dataset.foreground_labels) if self.previous_stage else 0)
        from .backends import RuntimeNetwork

        self.backend = "torch"  # from_onnx_model / from_model_folder(backend=...) set onnxruntime / openvino
        runtime_only = bool(networks) and all(isinstance(n, RuntimeNetwork) for n in networks)
        if runtime_only:  # ONNX runtimes: torch is not needed, nor imported
            given_modules = False
        else:
            import torch

            given_modules = any(isinstance(n, torch.nn.Module) for n in networks)
        self.networks = [self._as_network(n, i) for i, n in enumerate(networks)]
        if not self.networks:
            raise InferenceError("no networks (folds) to predict with")
        if channels_last == "auto":  # never re-layout a caller's module (e.g. a trainer's network) unasked
            channels_last = self.device.type == "cpu" and self.precision == "bf16" and not given_modules
        self.sliding = SlidingWindow(self.networks, self.config["patch_size"], self.dataset.num_segmentation_heads,
                                     self.mirror_axes, self.device, self.precision, channels_last=bool(channels_last),
                                     tta_batch=self._tta_batch(tta_batch))
        self.sliding.has_regions = self.dataset.has_regions

    def _tta_batch(self, tta_batch) -> int:
        copies = len(mirror_combinations(self.mirror_axes)) + 1
        if tta_batch != "auto":
            try:
                n = int(tta_batch)
            except (TypeError, ValueError):
                n = 0
            if n < 1:
                raise InferenceError(f"tta_batch must be 'auto' or a number >= 1, got {tta_batch!r}")
            return min(n, copies)
        if self.device.type != "cpu":
            return 1  # GPU memory is the scarce thing there; the calls are already fast
        features = (self.architecture.get("arch_kwargs") or {}).get("features_per_stage") or [32]
        per_copy = math.prod(int(p) for p in self.config["patch_size"]) * int(features[0]) * 4 * 3
        return max(1, min(copies, TTA_BATCH_BUDGET // max(per_copy, 1)))

    # ------------------------------------------------------------------ construction
    def _as_network(self, item, index: int):
        from .backends import RuntimeNetwork

        if isinstance(item, RuntimeNetwork):  # an ONNX runtime's network: used as it is
            return item
        import torch

        if isinstance(item, torch.nn.Module):
            net = item
        else:
            from ..networks import build_network, network_state_dict

            net = build_network(self.architecture, self.num_input_channels,
                                self.dataset.num_segmentation_heads, deep_supervision=False, initialize=False)
            try:
                net.load_state_dict(network_state_dict(item))
            except RuntimeError as e:
                fold = self.folds[index] if index < len(self.folds) else index
                raise InferenceError(
                    f"fold {fold}: the checkpoint's weights do not fit the network the plans describe "
                    f"(trainer {self.trainer_name} may build a custom architecture): {str(e).splitlines()[0]}"
                ) from None
        if hasattr(net, "decoder") and hasattr(net.decoder, "deep_supervision"):
            net.decoder.deep_supervision = False
        return net.to(self.device).eval()

    @classmethod
    def from_model_folder(cls, model_dir, folds=None, *, checkpoint: str = "checkpoint_final.pth",
                          configuration: str | None = None, **kwargs) -> Predictor:
        """A predictor for a trained-model folder (oxunet's or nnU-Net v2's) or an ONNX export of one
        (``oxunet export-model --format onnx``); see the class doc for kwargs. `backend`: 'torch'
        (default for torch folders), 'onnxruntime' (default for ONNX folders) or 'openvino'; a torch
        folder with another backend is converted to ONNX (checked against torch) when loaded."""
        from .onnx_export import is_onnx_model_dir

        backend = kwargs.pop("backend", None)
        if is_onnx_model_dir(model_dir):
            return cls.from_onnx_model(model_dir, folds, backend=backend or "onnxruntime", **kwargs)
        if kwargs.get("precision") == "int8":  # before any network is built or converted
            from .backends import resolve_backend_precision

            resolve_backend_precision(backend or "torch", "int8")  # refuses torch with the reason
            raise InferenceError(f"{model_dir}: --precision int8 runs an ONNX export with int8 models, not a trained-"
                                 "model folder; export one with `oxunet export-model --format onnx -m MODEL_FOLDER "
                                 "-o OUT --quantize int8 --calibration DIR` and predict with -m OUT")
        if backend not in (None, "torch"):
            from .backends import predictor_with_backend

            if str(kwargs.get("device", "cpu")) not in ("cpu", "auto") or kwargs.get("export_on") == "device":
                raise InferenceError(f"--backend {backend} runs on the CPU (device cpu, export on the CPU)")
            torch_kwargs = {k: v for k, v in kwargs.items() if k not in ("precision", "device", "export_on")}
            base = cls.from_model_folder(model_dir, folds, checkpoint=checkpoint, configuration=configuration,
                                         device="cpu", precision="fp32", export_on="cpu", **torch_kwargs)
            return predictor_with_backend(base, backend, kwargs.get("precision", "auto"))
        mf: ModelFolder = load_model_folder(model_dir, folds, checkpoint, configuration=configuration)
        kwargs.setdefault("architecture", mf.architecture)
        return cls(mf.plans, mf.configuration, mf.dataset, mf.state_dicts, mf.mirror_axes,
                   trainer_name=mf.trainer_name, folds=mf.folds, **kwargs)

    @classmethod
    def from_onnx_model(cls, model_dir, folds=None, *, backend: str = "onnxruntime", precision: str = "auto",
                        **kwargs) -> Predictor:
        """A predictor for a folder written by ``oxunet export-model --format onnx``, run by
        onnxruntime or OpenVINO on the CPU (torch runs no network here)."""
        from .backends import backend_networks, resolve_backend_precision
        from .onnx_export import load_onnx_model

        if backend == "torch":
            raise InferenceError(f"{model_dir}: an ONNX model runs with --backend onnxruntime or openvino, not torch")
        if kwargs.get("device", "cpu") not in ("cpu", "auto") or kwargs.get("export_on", "cpu") == "device":
            raise InferenceError(f"--backend {backend} runs on the CPU (device cpu, export on the CPU)")
        kwargs.update(device="cpu", export_on="cpu", channels_last=False)
        model = load_onnx_model(model_dir, folds)
        run_precision = resolve_backend_precision(backend, precision)
        files = [model.int8_fold_file(f) if run_precision == "int8" else model.fold_file(f) for f in model.folds]
        nets = backend_networks(backend, files, run_precision)
        pred = cls(model.plans, model.configuration, model.dataset_json, nets, model.mirror_axes, precision="fp32",
                   trainer_name=model.manifest.get("trainer_name", "nnUNetTrainer"), folds=model.folds, **kwargs)
        pred.backend, pred.precision = backend, run_precision
        return pred

    @classmethod
    def from_networks(cls, plans: dict, configuration: str, dataset_json, networks_or_state_dicts: Sequence,
                      mirror_axes, **kwargs) -> Predictor:
        """A predictor for networks (torch modules) or state dicts already in memory.

        Modules are used as they are (not copied): they are moved to the device, put in eval mode
        and their deep supervision is switched off; callers that keep training restore both."""
        return cls(plans, configuration, dataset_json, networks_or_state_dicts, mirror_axes, **kwargs)

    # ------------------------------------------------------------------ network space
    def predict_logits(self, data: np.ndarray):
        """Sliding-window logits ``(heads, Z, Y, X)`` float32 for a preprocessed case
        ``(C, Z, Y, X)`` (cascade: previous-stage one-hot channels already appended)."""
        data = self._check_data(data)
        return self.sliding.run(data, self.step_size, accumulator_dtype=self.accumulator_dtype).finalize()

    def _check_data(self, data) -> np.ndarray:
        if self.on_device and hasattr(data, "detach"):  # a tensor that stays where it is
            from .on_device import check_on_device_input

            try:
                check_on_device_input(data, self.num_input_channels)
            except ValueError as e:
                raise InferenceError(str(e)) from None
            return data
        if not isinstance(data, np.ndarray):
            data = data.detach().cpu().numpy() if hasattr(data, "detach") else np.asarray(data)
        data = np.asarray(data, dtype=np.float32)
        if data.ndim != 4:
            raise InferenceError(f"preprocessed data must be (C, Z, Y, X), got shape {data.shape}")
        if data.shape[0] != self.num_input_channels:
            raise InferenceError(f"preprocessed data has {data.shape[0]} channels, the network takes {self.num_input_channels}")
        return data

    # ------------------------------------------------------------------ preprocessed → exported
    def _use_streaming(self, properties: dict, shape) -> tuple[bool, str]:
        if self.streaming is False:
            return False, "off"
        ok, why = streaming_exact(self.export_plan, properties, shape)
        heads = self.dataset.num_segmentation_heads
        target = properties["shape_after_cropping_and_before_resampling"]
        size = heads * 4 * (int(np.prod(shape)) + int(np.prod(target)))
        if self.streaming == "auto" and size <= self.memory_budget:
            return False, f"logits {size / 2**30:.2f} GiB within the budget"
        if not ok:
            if self.streaming is True:
                warnings.warn(f"streaming export not exact here ({why}); using the whole-volume export", stacklevel=3)
            return False, f"not exact: {why}"
        return True, why

    def predict_preprocessed(self, data: np.ndarray, properties: dict, output_file=None,
                             save_probabilities: bool = False, *, return_probabilities: bool | None = None,
                             probabilities_dtype=np.float32, times: StageTimes | None = None,
                             save_uncertainty: bool = False) -> PredictionResult:
        """Predicts a preprocessed case and exports it to the original geometry.

        `properties` as preprocessing stores them (``spacing``, ``shape_before_cropping``,
        ``bbox_used_for_cropping``, ``shape_after_cropping_and_before_resampling``, ``sitk_stuff``...).
        With `output_file` the segmentation is written (plus ``.npz``/``.json`` with
        `save_probabilities`). `save_uncertainty`: entropy and member-disagreement maps
        (:mod:`.uncertainty`) in ``result.uncertainty``, written beside the segmentation."""
        times = StageTimes() if times is None else times
        t0 = time.perf_counter()
        want_probs = bool(save_probabilities if return_probabilities is None else return_probabilities or save_probabilities)
        staged = self.run_network(data, properties, want_probs, probabilities_dtype, times, uncertainty=save_uncertainty,
                                  spill_dir=self._spill_dir(output_file, save_probabilities))
        res = self.finish(staged, properties, output_file, save_probabilities, want_probs, probabilities_dtype, times)
        res.times["total"] = res.times.get("total", 0.0) + time.perf_counter() - t0
        return res

    def run_network(self, data, properties: dict, want_probs: bool, probabilities_dtype=np.float32,
                    times: StageTimes | None = None, uncertainty: bool = False, spill_dir=None) -> dict:
        """First half of :meth:`predict_preprocessed` (sliding window; with streaming also the
        export): a dict for :meth:`finish`, which may run in another thread. `spill_dir`: where
        streamed probabilities are kept disk-backed (None: in memory)."""
        times = StageTimes() if times is None else times
        data = self._check_data(data)
        if uncertainty and self.on_device and self.export_on == "device":
            raise InferenceError("--save-uncertainty runs with the export on the CPU (--export-on cpu or auto)")
        self.sliding.disagreement = bool(uncertainty)
        if self.on_device and not uncertainty:  # auto: the uncertainty maps are aggregated and exported on the host
            import torch

            from .on_device import sliding_window_on_device

            try:
                stream, note = self._use_device_streaming(properties, data.shape[1:], want_probs)
                if stream:
                    from .on_device import DeviceStreamingExport

                    sink = DeviceStreamingExport(self.export_plan, properties, data.shape[1:], self.device)
                    sliding_window_on_device(self.sliding, data, self.step_size, self.accumulator_dtype, times,
                                             on_slab=sink)
                    return {"streaming": True, "note": f"on device, streamed: {note}", "seg": None, "probs": None,
                            "logits": None, "device_stream": sink}
                logits = sliding_window_on_device(self.sliding, data, self.step_size, self.accumulator_dtype, times)
                return {"streaming": False, "note": f"on device: {note}", "seg": None, "probs": None,
                        "logits": None, "device_logits": logits}
            except torch.OutOfMemoryError:
                # as nnU-Net: a case too large for the GPU's memory is aggregated and exported on the host
                self._release_device_memory()
                warnings.warn("prediction on the device ran out of GPU memory; aggregating and exporting this case "
                              "on the CPU", stacklevel=2)
                data = data.detach().cpu().numpy() if hasattr(data, "detach") else np.asarray(data)
                out = self._run_network_on_host(data, properties, want_probs, probabilities_dtype, times, uncertainty,
                                                spill_dir)
                out["note"] = "device out of memory: host aggregation and export"
                return out
        if hasattr(data, "detach"):  # preprocessed on the device, aggregated on the host (uncertainty maps)
            data = data.detach().cpu().numpy()
        return self._run_network_on_host(data, properties, want_probs, probabilities_dtype, times, uncertainty,
                                         spill_dir)

    def _use_device_streaming(self, properties: dict, shape, want_probs: bool) -> tuple[bool, str]:
        """Stream slabs on the device (bounded GPU memory) when asked or when the whole-volume sums
        would take more than a quarter of the free GPU memory, and only where it is exact."""
        if self.streaming is False or want_probs:
            return False, "whole volume" if self.streaming is False else "whole volume (probabilities)"
        ok, why = streaming_exact_nearest(self.export_plan, properties, shape)
        size = self.dataset.num_segmentation_heads * (2 if self.accumulator_dtype == "float16" else 4) * int(
            np.prod(shape))
        budget = self.memory_budget
        if self.device.type == "cuda":
            import torch

            budget = torch.cuda.mem_get_info(self.device)[0] // 4
        if self.streaming == "auto" and size <= budget:
            return False, f"sums {size / 2**30:.2f} GiB within the budget"
        if not ok:
            return False, f"whole volume (slabs not exact: {why})"
        return True, why

    def _release_device_memory(self) -> None:
        import gc

        import torch

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _run_network_on_host(self, data, properties: dict, want_probs: bool, probabilities_dtype,
                             times: StageTimes, uncertainty: bool = False, spill_dir=None) -> dict:
        shape = data.shape[1:]
        extras: dict = {}  # the sliding window's member disagreement (--save-uncertainty)
        use_stream, note = self._use_streaming(properties, shape)
        logits_dtype = np.float16 if self.accumulator_dtype == "float16" else np.float32
        out = {"streaming": use_stream, "note": note, "seg": None, "probs": None, "logits": None,
               "uncertainty": {} if uncertainty else None, "extras": extras}
        if use_stream:
            sink = StreamingExport(self.export_plan, properties, shape, logits_dtype=logits_dtype,
                                   return_probabilities=want_probs, probabilities_dtype=probabilities_dtype, times=times,
                                   uncertainty=uncertainty, spill_dir=spill_dir)
            self.sliding.run(data, self.step_size, accumulator_dtype=self.accumulator_dtype, streaming=True,
                             on_slabs=sink, times=times, extras=extras)
            with times.stage("export"):
                out["seg"], out["probs"] = sink.result(probabilities_dtype)
                if uncertainty:
                    out["uncertainty"] = dict(sink.uncertainty or {})  # set by result() when asked for
        else:
            # the aggregator still streams: finished slabs go straight into one float16 (nnU-Net's
            # logits dtype) or float32 array, so no float32 copy of the whole volume is ever made
            logits = np.empty((self.dataset.num_segmentation_heads, *shape), logits_dtype)

            def keep(slabs):
                with times.stage("aggregation"):
                    for x0, x1, slab in slabs:
                        if slab.dtype == logits.dtype:
                            logits[:, x0:x1] = slab
                        else:  # a contiguous block of the (C, Z, Y, X) array per channel
                            for c in range(slab.shape[0]):
                                cast_into(slab[c], logits[c, x0:x1])

            self.sliding.run(data, self.step_size, accumulator_dtype=self.accumulator_dtype, streaming=True,
                             on_slabs=keep, times=times, extras=extras)
            out["logits"] = logits
        return out

    def finish(self, staged: dict, properties: dict, output_file=None, save_probabilities: bool = False,
               want_probs: bool = False, probabilities_dtype=np.float32, times: StageTimes | None = None) -> PredictionResult:
        """Second half of :meth:`predict_preprocessed`: export (unless streamed) and writing."""
        times = StageTimes() if times is None else times
        if staged.get("device_stream") is not None:
            with times.stage("export"):
                seg, probs = staged.pop("device_stream").result(), None
        elif staged.get("device_logits") is not None:
            from .on_device import export_on_device

            import torch

            device_logits = staged.pop("device_logits")
            with times.stage("export"):
                try:
                    seg, probs = export_on_device(self.export_plan, device_logits, properties,
                                                  return_probabilities=want_probs,
                                                  probabilities_dtype=probabilities_dtype)
                except torch.OutOfMemoryError:
                    warnings.warn("export on the device ran out of GPU memory; exporting this case on the CPU",
                                  stacklevel=2)
                    host = np.empty((device_logits.num_channels, *device_logits.shape), np.float32)
                    for c in range(device_logits.num_channels):  # one channel at a time through GPU memory
                        host[c] = device_logits.logits(c, c + 1)[0].cpu().numpy()
                    del device_logits
                    self._release_device_memory()
                    seg, probs = export_logits(self.export_plan, host, properties, return_probabilities=want_probs,
                                               probabilities_dtype=probabilities_dtype)
        elif staged["logits"] is not None:
            with times.stage("export"):
                seg, probs = export_logits(self.export_plan, staged.pop("logits"), properties,
                                           return_probabilities=want_probs, probabilities_dtype=probabilities_dtype,
                                           uncertainty=staged.get("uncertainty"),
                                           spill_dir=self._spill_dir(output_file, save_probabilities))
        else:
            seg, probs = staged["seg"], staged["probs"]
        maps = staged.get("uncertainty")
        summary = None
        if maps is not None:
            with times.stage("export"):
                maps, summary = self._uncertainty_maps(maps, staged.get("extras", {}).get("disagreement"), seg,
                                                       properties)
        out_path = None
        if output_file is not None:
            with times.stage("export"):
                out_path = self.output_path(output_file)
                out_path.parent.mkdir(parents=True, exist_ok=True)
                write_segmentation(self.export_plan, seg, out_path, properties)
                if save_probabilities:
                    save_probabilities_files(probs, properties, self._stem(out_path))
                if maps is not None:
                    from .uncertainty import write_uncertainty_maps

                    write_uncertainty_maps(self._stem(out_path), maps, properties, self.dataset.file_ending)
        from .on_device import peak_gpu_memory

        return PredictionResult(seg, probs if want_probs else None, properties, dict(times), peak_rss_bytes(),
                                staged["streaming"], staged["note"], out_path, peak_gpu_memory(self.device),
                                self.on_device, maps, summary)

    def _uncertainty_maps(self, maps: dict, disagreement, seg, properties: dict) -> tuple[dict, dict]:
        """Adds the member disagreement (network space → input geometry, resampled like the
        probabilities, one channel) to the entropy map; returns the maps and their summary."""
        from .export import _resample, _uncrop_map
        from .uncertainty import summarize

        maps = dict(maps)
        if disagreement is not None:
            ep = self.export_plan
            target = [int(s) for s in properties["shape_after_cropping_and_before_resampling"]]
            cs, ns = ep.spacings(properties)
            d = _resample(ep, np.ascontiguousarray(disagreement[None], dtype=np.float32), target, cs, ns)[0]
            maps["disagreement"] = _uncrop_map(ep, np.clip(d, 0, None), properties)
        return maps, summarize(maps["entropy"], maps.get("disagreement"), seg)

    def output_path(self, output_file) -> Path:
        p = Path(output_file)
        ending = self.dataset.file_ending
        return p if p.name.endswith(ending) else p.with_name(p.name + ending)

    def _spill_dir(self, output_file, save_probabilities: bool) -> Path | None:
        """Where saved probabilities are built disk-backed (the output folder), or None (in memory):
        only when they are written to a file anyway."""
        if output_file is None or not save_probabilities:
            return None
        d = self.output_path(output_file).parent
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _stem(self, out_path: Path) -> Path:
        return out_path.with_name(out_path.name[: -len(self.dataset.file_ending)])

    # ------------------------------------------------------------------ raw inputs
    def preprocess(self, images, properties: dict | None = None, prev_stage_seg=None, case: str = "<case>"):
        """Raw channel files (or an array ``(C, Z, Y, X)`` with `properties` holding ``spacing``)
        → ``(data, properties)`` with the cascade's one-hot channels appended when needed."""
        from ..preprocessing import PreprocessingError, preprocess_case

        if self.previous_stage and prev_stage_seg is None:
            raise InferenceError(f"case {case}: configuration {self.configuration} is a cascade stage: it needs the "
                                 f"segmentation predicted by {self.previous_stage} (--prev-stage / prev_stage_seg)")
        seg_in = None
        if self.previous_stage:
            seg_in = prev_stage_seg if not isinstance(prev_stage_seg, os.PathLike) else str(prev_stage_seg)
            if isinstance(seg_in, str) and not Path(seg_in).is_file():
                raise InferenceError(f"case {case}: previous-stage segmentation {seg_in} not found")
        if not isinstance(images, np.ndarray):
            self._check_dimensionality(images, case)
        if self.on_device and not self.previous_stage:
            staged = self._preprocess_on_device(images, properties, case)
            if staged is not None:
                return staged
        device_kw: dict[str, Any] = {}
        if self.on_device:
            device_kw = dict(resample_data_fn=self._resample_on_device, skip_seg=True)
        data: Any  # numpy, or a torch tensor on the device
        try:
            data, seg, props = preprocess_case(images, seg_in, properties, self.preprocessing_plan, case=case,
                                               class_keys=[], **device_kw)
        except PreprocessingError as e:
            raise InferenceError(str(e)) from None
        if self.on_device and isinstance(data, np.ndarray):
            import torch

            data = torch.from_numpy(data).to(self.device)
        if self.previous_stage:
            assert seg is not None  # preprocessed from seg_in, which a cascade stage requires
            labels = self.dataset.foreground_labels
            onehot = np.zeros((len(labels), *seg.shape[1:]), np.float32)
            for i, lab in enumerate(labels):
                onehot[i] = seg[0] == lab
            if self.on_device:
                import torch

                data = torch.cat([data, torch.from_numpy(onehot).to(data.device)])
            else:
                data = np.concatenate([data, onehot])
        props.pop("class_locations", None)
        return data, props

    def _check_dimensionality(self, images, case: str) -> None:
        """A 2D image given to a 3D model (or a 3D image to a model trained on 2D images) would run,
        slowly, and predict nonsense: refuse it, naming the file."""
        files = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        if not files:
            return
        dim = image_dimension(files[0])
        if dim is None:
            return
        model_3d = len(self.config["patch_size"]) == 3
        trained_2d = [int(s) for s in self.plans.get("original_median_shape_after_transp", [2])][:1] == [1]
        if dim == 2 and model_3d:
            raise InferenceError(f"case {case}: {files[0]} is a 2D image but configuration {self.configuration} is a "
                                 "3D model; predict 2D images with the 2d configuration")
        if dim == 3 and trained_2d:
            raise InferenceError(f"case {case}: {files[0]} is a 3D image but the model was trained on 2D images")

    def _preprocess_on_device(self, images, properties, case: str):
        """Reads on the host, then crops, normalises and resamples on the device; None where the
        plan needs the CPU pipeline (masked ZScore)."""
        from ..preprocessing import PreprocessingError
        from ..preprocessing.normalization import NormalizationError
        from .device_preprocessing import device_preprocessing_supported, preprocess_on_device

        if not device_preprocessing_supported(self.preprocessing_plan):
            return None
        if isinstance(images, np.ndarray):
            image, props = images, dict(properties or {})
        else:
            from ..preprocessing.pipeline import _read

            paths = [images] if isinstance(images, (str, os.PathLike)) else list(images)
            try:
                image, _, props = _read(self.preprocessing_plan, paths, None)
            except PreprocessingError as e:
                raise InferenceError(str(e)) from None
        if image.ndim != 4 or image.shape[0] != self.preprocessing_plan.num_channels:
            return None  # the CPU pipeline names the problem
        try:
            return preprocess_on_device(self.preprocessing_plan, image, props, self.device)
        except NormalizationError as e:
            raise InferenceError(f"case {case}: {e}") from None

    def _resample_on_device(self, resampling, data, new_shape, current_spacing, new_spacing):
        import torch

        from .torch_resample import resample_data_torch

        x = torch.from_numpy(np.ascontiguousarray(data)).to(self.device, non_blocking=True)
        return resample_data_torch(x, new_shape, current_spacing, new_spacing, resampling.order, resampling.order_z,
                                   resampling.force_separate_z)

    def _reset_peaks(self) -> None:
        from .on_device import reset_peak_gpu_memory

        reset_peak_rss()
        reset_peak_gpu_memory(self.device)

    def predict_case(self, image_files: Sequence, output_file=None, *, save_probabilities: bool = False,
                     prev_stage_seg=None, return_probabilities: bool | None = None,
                     save_uncertainty: bool = False) -> PredictionResult:
        """Preprocesses, predicts and exports one case given as channel files (``CASE_0000.nii.gz`` ...)."""
        self._reset_peaks()
        times = StageTimes()
        t0 = time.perf_counter()
        case = Path(str(image_files[0])).name if image_files else "<case>"
        ending = self.dataset.file_ending
        if case.endswith(ending) and len(case) > len(ending) + 5 and case[-len(ending) - 5] == "_":
            case = case[: -len(ending) - 5]  # CASE_0000.nii.gz -> CASE
        with times.stage("preprocessing"):
            data, props = self.preprocess([str(f) for f in image_files], None, prev_stage_seg, case=case)
        res = self.predict_preprocessed(data, props, output_file, save_probabilities,
                                        return_probabilities=return_probabilities, times=times,
                                        save_uncertainty=save_uncertainty)
        res.times["total"] = time.perf_counter() - t0
        return res

    def predict_array(self, image: np.ndarray, spacing: Sequence[float], *, return_probabilities: bool = False,
                      prev_stage_seg: np.ndarray | None = None, return_uncertainty: bool = False) -> PredictionResult:
        """In memory: `image` ``(C, Z, Y, X)`` or ``(Z, Y, X)`` with its `spacing` (array axis order)
        → segmentation of the same shape (and probabilities ``(heads, Z, Y, X)``)."""
        self._reset_peaks()
        times = StageTimes()
        t0 = time.perf_counter()
        image = np.asarray(image)
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4:
            raise InferenceError(f"image must be (C, Z, Y, X) or (Z, Y, X), got shape {image.shape}")
        if len(spacing) != 3:
            raise InferenceError(f"spacing must have 3 values (array axis order), got {list(spacing)}")
        with times.stage("preprocessing"):
            data, props = self.preprocess(image, {"spacing": [float(s) for s in spacing]}, prev_stage_seg, "<array>")
        res = self.predict_preprocessed(data, props, None, False, return_probabilities=return_probabilities,
                                        times=times, save_uncertainty=return_uncertainty)
        res.times["total"] = time.perf_counter() - t0
        return res

    def predict_sitk(self, image, *, prev_stage_seg=None):
        """In memory: a SimpleITK image (or a list, one per channel) → the segmentation as a
        SimpleITK image with the input's spacing, origin and direction."""
        import SimpleITK as sitk

        images = list(image) if isinstance(image, (list, tuple)) else [image]
        arrays = [sitk.GetArrayFromImage(im).astype(np.float32, copy=False) for im in images]
        if arrays[0].ndim != 3:
            raise InferenceError(f"predict_sitk: expected 3D images, got {arrays[0].ndim}D")
        spacing = list(images[0].GetSpacing())[::-1]
        prev = sitk.GetArrayFromImage(prev_stage_seg) if prev_stage_seg is not None else None
        res = self.predict_array(np.stack(arrays), spacing, prev_stage_seg=prev)
        out = sitk.GetImageFromArray(res.segmentation)
        out.CopyInformation(images[0])
        return out


def save_probabilities_files(probs, properties, stem):
    if probs is None:
        raise InferenceError("probabilities were not computed")
    return save_probabilities(probs, properties, stem)


def image_dimension(path) -> int | None:
    """Spatial dimension from the file header alone (SimpleITK); None where it cannot tell."""
    try:
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        dim = reader.GetDimension()
        if dim == 3 and reader.GetSize()[2] == 1 and str(path).lower().endswith((".png", ".bmp", ".tif", ".tiff")):
            return 2
        return dim
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the reader itself
        return None
