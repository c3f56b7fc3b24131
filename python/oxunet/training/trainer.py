"""nnU-Net's ``nnUNetTrainer`` (spec §13): SGD Nesterov, PolyLR per epoch, deep supervision,
AMP, pseudo-Dice EMA, best/latest/final checkpoints, exact ``--continue``, final validation by the predictor.

Resume: the poly schedule is a function of (epoch, total epochs); continuing with a larger
``epochs`` recomputes it over the new total from the next epoch on (nnU-Net behaves the same).
Batches are a pure function of (seed, epoch, workers), so 1 + continue 1 epochs give the same
weights as 2 straight epochs (same device, workers, precision).

Related modules: precision (``--precision``), transfer (``--pretrained`` / ``--freeze``),
distributed (DDP: ``--num-gpus`` / torchrun), progress_plot (``progress.png``).
Compile follows nnU-Net's ``_do_i_compile`` (:func:`should_compile`, ``$nnUNet_compile``); data
workers follow ``$nnUNet_n_proc_DA`` (loader.default_num_workers).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..dataset import Paths, dataset_name, load_dataset_json
from ..planning import load_plans, resolve_configuration
from ..preprocessing.storage import list_cases, open_case
from .checkpoint import find_resume_checkpoint, restore_rng_states, rng_states, save_checkpoint
from .config import TrainerConfig
from .logger import TrainingLogger
from .transfer import TransferReport  # noqa: F401 (type of load_pretrained)
from .precision import (PrecisionError, autocast, check_precision,
                        make_grad_scaler, resolve_precision, training_step)

CHECKPOINT_FORMAT = "oxunet-checkpoint"


class TrainingError(RuntimeError):
    """Bad training input (missing folders, unknown fold, plans/dataset mismatch); names the problem."""


def poly_lr(initial_lr: float, epoch: int, max_epochs: int, exponent: float = 0.9) -> float:
    """nnU-Net's PolyLRScheduler: ``initial × (1 − epoch / max_epochs) ** exponent``."""
    return initial_lr * (1 - epoch / max_epochs) ** exponent


def should_compile(requested: bool | None, device: torch.device | str, environ=None) -> bool:
    """nnU-Net's ``_do_i_compile``: never on CPU / MPS / Windows; on CUDA ``requested`` when set,
    else ``$nnUNet_compile`` (true/1/t; default true)."""
    kind = torch.device(device).type
    if kind != "cuda" or os.name == "nt":
        return False
    if requested is not None:
        return bool(requested)
    env = os.environ if environ is None else environ
    return env.get("nnUNet_compile", "true").lower() in ("true", "1", "t")


def _fold_value(fold: int | str) -> int | str:
    if isinstance(fold, int) and not isinstance(fold, bool) and fold >= 0:
        return fold
    if isinstance(fold, str) and (fold == "all" or fold.isdigit()):
        return fold if fold == "all" else int(fold)
    raise TrainingError(f"fold: expected a non-negative integer or 'all', got {fold!r}")


@dataclass
class EpochSummary:
    epoch: int
    train_loss: float
    val_loss: float
    pseudo_dice: list[float]
    ema: float
    lr: float
    seconds: float


class Trainer:
    """One (dataset, configuration, fold) training run. ``run()`` trains (or resumes) and validates."""

    def __init__(
        self,
        dataset: str | int,
        configuration: str,
        fold: int | str,
        *,
        paths: Paths,
        config: TrainerConfig | None = None,
        plans_name: str = "nnUNetPlans",
        device: str | torch.device = "cpu",
        quiet: bool = False,
        on_epoch_end: Callable[[EpochSummary], None] | None = None,
    ):
        self.config = config or TrainerConfig()
        self.fold = _fold_value(fold)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise TrainingError("device cuda requested but torch sees no CUDA device")
        self.quiet, self.on_epoch_end = quiet, on_epoch_end
        from .distributed import local_rank, rank, world_size

        # DDP (oxunet.training.distributed): joined before the Trainer is made (launch / torchrun)
        self.rank, self.world_size = rank(), world_size()
        self.is_main = self.rank == 0
        if self.device.type == "cuda" and self.world_size > 1 and self.device.index is None:
            self.device = torch.device("cuda", local_rank())
        if paths.preprocessed is None:
            raise TrainingError("no preprocessed folder: set nnUNet_preprocessed / OXUNET_PREPROCESSED or pass --preprocessed-dir")
        if paths.results is None:
            raise TrainingError("no results folder: set nnUNet_results / OXUNET_RESULTS or pass --results-dir")
        try:
            self.dataset_name = dataset_name(dataset, paths)
        except LookupError as e:
            raise TrainingError(str(e)) from None
        self.pre_dir = Path(paths.preprocessed) / self.dataset_name
        plans_path = self.pre_dir / f"{plans_name}.json"
        if not plans_path.is_file():
            raise TrainingError(f"{plans_path}: plans file not found (run `oxunet plan-and-preprocess -d {dataset}` first)")
        self.plans = load_plans(plans_path)
        self.plans_name = plans_name
        if self.plans.get("dataset_name") not in (None, self.dataset_name):
            raise TrainingError(f"{plans_path}: plans are for dataset {self.plans['dataset_name']!r}, not {self.dataset_name!r}")
        self.configuration_name = configuration
        try:
            self.cfg = resolve_configuration(self.plans, configuration, str(plans_path))
        except Exception as e:
            raise TrainingError(str(e)) from None
        self.previous_stage = self.cfg.get("previous_stage")
        ds_json = self.pre_dir / "dataset.json"
        if not ds_json.is_file():
            raise TrainingError(f"{ds_json}: dataset.json missing from the preprocessed dataset folder")
        self.dataset_json_path = ds_json
        self.info = load_dataset_json(ds_json)
        self.data_dir = self.pre_dir / self.cfg["data_identifier"]
        if not self.data_dir.is_dir():
            raise TrainingError(f"{self.data_dir}: preprocessed data for configuration {configuration!r} not found "
                                f"(run `oxunet preprocess -d {dataset} -c {configuration}`)")
        self.cases = list_cases(self.data_dir)
        if not self.cases:
            raise TrainingError(f"{self.data_dir}: no complete preprocessed cases")
        first = open_case(self.data_dir, self.cases[0])
        if first.data.shape[0] != self.info.num_channels:
            raise TrainingError(f"{self.data_dir}: cases have {first.data.shape[0]} channel(s) but {ds_json} declares "
                                f"{self.info.num_channels}: plans/preprocessed data and dataset.json do not match")
        if len(self.cfg["patch_size"]) not in (2, 3):
            raise TrainingError(f"{plans_path}: patch_size {self.cfg['patch_size']} must have 2 or 3 axes")

        from .splits import train_val_keys

        try:
            self.train_keys, self.val_keys = train_val_keys(self.pre_dir, self.cases, self.fold)
        except ValueError as e:
            raise TrainingError(str(e)) from None
        missing = sorted(set(self.train_keys + self.val_keys) - set(self.cases))
        if missing:
            raise TrainingError(f"{self.pre_dir / 'splits_final.json'}: fold {self.fold} names case(s) not preprocessed "
                                f"in {self.data_dir}: {missing[:5]}")
        self.output_root = Path(paths.results) / self.dataset_name / f"{self.config.name}__{plans_name}__{configuration}"
        self.prev_stage_dir = self._check_previous_stage(dataset) if self.previous_stage else None
        self.fold_dir = self.output_root / f"fold_{self.fold}"
        self._built = False

    def _check_previous_stage(self, dataset) -> Path:
        """Cascade: the previous stage's ``predicted_next_stage`` folder (nnU-Net: same trainer and
        plans); every case of this fold must have its segmentation there."""
        from .cascade import (CascadeError, missing_message, predicted_next_stage_dir, stage_segmentation_file,
                              unpack_stage_segmentations)

        if self.previous_stage not in self.plans.get("configurations", {}):
            raise TrainingError(f"configuration {self.configuration_name!r}: previous_stage {self.previous_stage!r} "
                                f"is not a configuration of the plans")
        folder = predicted_next_stage_dir(self.output_root.parent, self.config.name, self.plans_name,
                                          self.previous_stage, self.configuration_name)
        missing = [c for c in self.train_keys + self.val_keys if stage_segmentation_file(folder, c) is None]
        if missing:
            raise TrainingError(missing_message(folder, missing, self.previous_stage, str(dataset), self.config.name,
                                                self.plans_name))
        try:
            unpack_stage_segmentations(folder, self.train_keys + self.val_keys)  # memory maps for the loader
        except CascadeError as e:
            raise TrainingError(str(e)) from None
        return folder

    @property
    def num_input_channels(self) -> int:
        """nnU-Net's determine_num_input_channels: image channels (+ foreground labels for a cascade stage)."""
        return self.info.num_channels + (len(self.info.foreground_labels) if self.previous_stage else 0)

    # ------------------------------------------------------------------ setup
    @property
    def global_batch_size(self) -> int:
        """The plan's (or ``--batch-size``) batch: split across DDP ranks."""
        return int(self.config.batch_size or self.cfg["batch_size"])

    def rank_split(self):
        """This rank's batch size and oversampling (nnU-Net's DDP rule; the whole batch without DDP)."""
        from .distributed import split_batch

        try:
            splits = split_batch(self.global_batch_size, self.world_size, self._oversample(),
                                 self.config.probabilistic_oversampling)
        except ValueError as e:
            raise TrainingError(str(e)) from None
        return splits[self.rank]

    @property
    def batch_size(self) -> int:
        """This rank's batch size."""
        return self.rank_split().batch_size

    @property
    def num_workers(self) -> int:
        from .loader import default_num_workers

        return default_num_workers() if self.config.num_workers is None else self.config.num_workers

    def loader_stream(self, validation: bool) -> int:
        """Batch stream id: rank r uses 2r (training) and 2r + 1 (validation), the equivalent of a
        DistributedSampler shard; rank 0 / no DDP keeps 0 and 1."""
        return 2 * self.rank + int(validation)

    def _oversample(self) -> float:
        c = self.config
        if c.oversample_foreground_percent is not None:
            return c.oversample_foreground_percent
        # nnUNetTrainer_probabilisticOversampling: the deterministic scheme's effective fraction
        b = self.global_batch_size
        return float(np.mean([j >= round(b * (1 - 0.33)) for j in range(b)]))

    def _build(self, distributed: bool = True) -> None:
        """Network, loss, optimizer, loaders. ``distributed=False``: no DDP wrapper even in a DDP
        run (validation on rank 0 alone must not enter DDP's collective construction)."""
        if self._built:
            return
        from ..networks import build_network
        from .augmentation import build_training_transforms, build_validation_transforms, configure_augmentation
        from .augmentation.presets import get_preset
        from .loader import LoaderSpec
        from .losses import build_loss, deep_supervision_scales

        c, cfg, info = self.config, self.cfg, self.info
        arch = cfg["architecture"]
        self.network = build_network(arch, self.num_input_channels, info.num_segmentation_heads,
                                     deep_supervision=c.deep_supervision).to(self.device)
        strides = arch["arch_kwargs"]["strides"]
        n_out = len(strides) - 1
        self.ds_scales = deep_supervision_scales(strides) if c.deep_supervision else None
        ds_weights = c.deep_supervision_weights if c.deep_supervision else None
        if self.world_size > 1 and c.deep_supervision and ds_weights is None:
            # nnU-Net under DDP: the lowest output gets 1e-6 instead of 0 (DDP rejects parameters without a
            # gradient). nnU-Net keeps 0 when it compiles; we use 1e-6 then too (same loss to 1e-6, no risk)
            w = [1 / 2**i for i in range(n_out)]
            w[-1] = 1e-6 if n_out > 1 else w[-1]
            ds_weights = [x / sum(w) for x in w]
        self.loss = build_loss(c.loss, batch_dice=bool(cfg.get("batch_dice", False)), is_regions=info.has_regions,
                               ignore_label=info.ignore_label, smooth=c.loss_smooth,
                               num_outputs=n_out if c.deep_supervision else None,
                               deep_supervision_weights=ds_weights)
        from .transfer import TransferError, apply_freeze

        try:
            self.frozen_parameters = apply_freeze(self.network, c.freeze)
        except TransferError as e:
            raise TrainingError(str(e)) from None
        # frozen parameters stay out of the optimizer (no momentum / weight decay on them)
        self.optimizer = torch.optim.SGD(self._trainable_params(), c.initial_lr, weight_decay=c.weight_decay,
                                         momentum=c.momentum, nesterov=True)
        self.precision = resolve_precision(c.precision, self.device)
        try:
            check_precision(self.precision, self.device)
        except PrecisionError as e:
            raise TrainingError(str(e)) from None
        self.grad_scaler = make_grad_scaler(self.precision, self.device)
        patch = tuple(int(p) for p in cfg["patch_size"])
        preset = get_preset(c.augmentation)
        setup = configure_augmentation(patch, patch_scale_range=preset.patch_scale_range, mirror=preset.mirror)
        self.inference_allowed_mirroring_axes = setup.mirror_axes
        regions = info.foreground_regions if info.has_regions else None
        labels_kw = dict(deep_supervision_scales=self.ds_scales, foreground_labels=info.foreground_labels,
                         regions=regions, ignore_label=info.ignore_label, is_cascaded=bool(self.previous_stage))
        train_aug = build_training_transforms(patch, preset, use_mask_for_norm=cfg.get("use_mask_for_norm"), **labels_kw)
        val_aug = build_validation_transforms(**labels_kw)
        common = dict(folder=str(self.data_dir), batch_size=self.batch_size,
                      oversample_foreground_percent=self.rank_split().oversample_foreground_percent,
                      probabilistic_oversampling=c.probabilistic_oversampling, has_ignore=info.ignore_label is not None,
                      prev_stage_folder=str(self.prev_stage_dir) if self.prev_stage_dir is not None else None)
        initial = setup.initial_patch_size[-len(patch):]
        from .device_augment import resolve_augment_on

        self.augment_on = resolve_augment_on(c.augment_on, self.device)
        self.train_augmenter = train_aug
        self.train_spec = LoaderSpec(cases=list(self.train_keys), patch_size=tuple(initial), final_patch_size=patch,
                                     augmenter=train_aug, augment_in_workers=self.augment_on == "workers", **common)
        self.val_spec = LoaderSpec(cases=list(self.val_keys), patch_size=patch, final_patch_size=patch,
                                   augmenter=val_aug, **common)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # as nnU-Net: fixed patch shapes, so autotuning pays
        self.compiled = should_compile(c.compile, self.device)
        if self.compiled:
            self._forward = torch.compile(self.network)
        else:
            self._forward = self.network
        if self.world_size > 1 and distributed:
            from torch.nn.parallel import DistributedDataParallel

            from .losses import enable_ddp_gather

            enable_ddp_gather(self.loss)
            ids = [self.device.index] if self.device.type == "cuda" else None
            # DDP broadcasts rank 0's initial weights; gradients are averaged over ranks
            unused = bool(ds_weights) and any(w == 0 for w in ds_weights)  # user weights that skip outputs
            self._forward = DistributedDataParallel(self._forward, device_ids=ids, find_unused_parameters=unused)
        self._built = True

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self, epoch_next: int) -> dict[str, Any]:
        return {
            "network_weights": self.network.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "logging": self.logger.log,
            "_best_ema": self._best_ema,
            "current_epoch": epoch_next,
            "init_args": {"plans": self.plans, "configuration": self.configuration_name, "fold": self.fold,
                          "dataset_json": self.info.raw, "device": str(self.device)},
            "trainer_name": self.config.name,
            "inference_allowed_mirroring_axes": self.inference_allowed_mirroring_axes,
            "oxunet": {"format": CHECKPOINT_FORMAT, "version": 1, "trainer_config": self.config.to_dict(),
                       "seed": self.seed, "rng_states": rng_states(), "plans_name": self.plans_name,
                       "pretrained": self.logger.extra.get("pretrained")},
        }

    def _save(self, path: Path, checkpoint_fn) -> None:
        """Only rank 0 writes checkpoints (``checkpoint_fn`` builds the dict only there)."""
        if self.is_main:
            save_checkpoint(path, checkpoint_fn())

    def _load(self, path: Path) -> None:
        from ..networks import load_nnunet_checkpoint

        ck = load_nnunet_checkpoint(path, map_location=self.device)
        self.network.load_state_dict(ck["network_weights"])
        self.optimizer.load_state_dict(ck["optimizer_state"])
        if self.grad_scaler is not None and ck.get("grad_scaler_state"):
            self.grad_scaler.load_state_dict(ck["grad_scaler_state"])
        self.current_epoch = int(ck["current_epoch"])
        self._best_ema = ck.get("_best_ema")
        self.logger.load(ck.get("logging", {}), self.current_epoch)
        ours = ck.get("oxunet") or {}
        if ours.get("seed") is not None:
            self.seed = int(ours["seed"])
        if ours.get("rng_states"):
            restore_rng_states(ours["rng_states"])
        if ours.get("pretrained"):
            self.logger.extra["pretrained"] = ours["pretrained"]

    # ------------------------------------------------------------------ setup of the output folder
    def _prepare_output(self) -> None:
        self.fold_dir.mkdir(parents=True, exist_ok=True)
        for name, target in (("plans.json", f"{self.plans_name}.json"), ("dataset.json", "dataset.json"),
                             ("dataset_fingerprint.json", "dataset_fingerprint.json")):
            src = self.pre_dir / target
            if src.is_file():
                shutil.copyfile(src, self.output_root / name)
        debug = {"trainer_config": self.config.to_dict(), "dataset": self.dataset_name, "configuration": self.configuration_name,
                 "fold": self.fold, "plans_name": self.plans_name, "device": str(self.device), "precision": self.precision,
                 "compiled": self.compiled, "world_size": self.world_size, "global_batch_size": self.global_batch_size,
                 "batch_size": self.batch_size, "num_workers": self.num_workers, "seed": self.seed,
                 "augment_on": self.augment_on,
                 "patch_size": list(self.cfg["patch_size"]), "initial_patch_size": list(self.train_spec.patch_size),
                 "train_cases": len(self.train_keys), "val_cases": len(self.val_keys), "hostname": platform.node(),
                 "torch_version": torch.__version__,
                 "gpu_name": torch.cuda.get_device_name() if self.device.type == "cuda" else None}
        (self.fold_dir / "debug.json").write_text(json.dumps(debug, indent=1, default=str))

    # ------------------------------------------------------------------ steps
    def _autocast(self):
        return autocast(self.precision, self.device)

    def _to_device(self, batch: dict):
        if "seg" in batch:  # raw patches: augmented here, on the training device (--augment-on device)
            from .device_augment import augment_batch

            batch = augment_batch(self.train_augmenter, batch, self.device)
        data = batch["data"].to(self.device, non_blocking=True)
        t = batch["target"]
        target = [x.to(self.device, non_blocking=True) for x in t] if isinstance(t, list) else t.to(self.device, non_blocking=True)
        return data, target

    def train_batches(self, epoch: int, pin_memory: bool, num_workers: int | None = None):
        """One epoch of training batches. With workers, they live across epochs (a
        :class:`~oxunet.training.loader.PersistentLoader`: no start-up per epoch, same batches);
        with ``--augment-on device`` batches are augmented on the device a few ahead of the step."""
        from .loader import PersistentLoader, epoch_loader

        n = self.num_workers if num_workers is None else num_workers
        c = self.config
        if n > 0:
            pl = getattr(self, "_train_loader", None)
            if pl is None or pl.next_epoch != epoch or getattr(self, "_train_loader_workers", None) != n:
                if pl is not None:
                    pl.close()
                pl = self._train_loader = PersistentLoader(self.train_spec, c.iterations_per_epoch, self.seed, epoch,
                                                           max(c.epochs, epoch + 1), stream=self.loader_stream(False),
                                                           num_workers=n, pin_memory=pin_memory)
                self._train_loader_workers = n
            batches = pl.epoch(epoch)
        else:
            batches = epoch_loader(self.train_spec, c.iterations_per_epoch, self.seed, epoch,
                                   stream=self.loader_stream(False), num_workers=0, pin_memory=pin_memory)
        return self.augment_on_device(batches)

    def augment_on_device(self, batches):
        """Wraps raw batches in the device prefetcher (``--augment-on device``); others pass through."""
        if self.augment_on != "device":
            return batches
        from .device_augment import DevicePrefetcher

        return DevicePrefetcher(batches, self.train_augmenter, self.device)

    def close_loaders(self) -> None:
        """Ends the training workers (they otherwise live until the next epoch is asked for)."""
        pl = getattr(self, "_train_loader", None)
        if pl is not None:
            pl.close()
        self._train_loader = None

    def train_step(self, batch: dict) -> float:
        data, target = self._to_device(batch)
        loss = training_step(self._forward, self.loss, self.optimizer, self._trainable_params(), data, target,
                             self.precision, self.device, self.grad_scaler, self.config.grad_clip)
        return float(loss.cpu())

    def _trainable_params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.network.parameters() if p.requires_grad]

    @torch.no_grad()
    def validation_step(self, batch: dict) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        data, target = self._to_device(batch)
        with self._autocast():
            out = self._forward(data)
            loss = self.loss(out, target)
        out0 = out[0] if isinstance(out, (list, tuple)) else out
        t0 = target[0] if isinstance(target, list) else target
        tp, fp, fn = online_tp_fp_fn(out0.float(), t0, self.info.has_regions, self.info.ignore_label)
        return float(loss.cpu()), tp, fp, fn

    # ------------------------------------------------------------------ loop
    def run(self, *, continue_training: bool = False, stop_after_epochs: int | None = None,
            validate: bool = True, pretrained: str | None = None,
            validation_checkpoint: str = "checkpoint_final.pth") -> Path:
        """Trains from scratch or resumes; ``stop_after_epochs`` ends this call early (the run can be
        continued); returns the fold folder. Final validation runs once the last epoch is done."""
        from .distributed import broadcast_object

        c = self.config

        seed = c.seed if c.seed is not None else int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        self.seed = int(broadcast_object(seed))  # one seed for all ranks
        torch.manual_seed(self.seed)
        self._build()
        self.logger = TrainingLogger(self.fold_dir, self.quiet, enabled=self.is_main)
        self._best_ema: float | None = None
        self.current_epoch = 0
        if self.is_main:
            self._prepare_output()
        if continue_training:
            if pretrained:
                raise TrainingError("--continue cannot be combined with --pretrained")
            ck = find_resume_checkpoint(self.fold_dir)
            if ck is not None:
                self._load(ck)
                self.logger.line(f"resumed from {ck.name} at epoch {self.current_epoch}")
            else:
                self.logger.line("no checkpoint to continue from: starting from scratch")
        elif pretrained:
            self.load_pretrained(pretrained)
        pin = self.device.type == "cuda"
        try:
            self._epochs(c, pin, stop_after_epochs)
        finally:
            self.close_loaders()
        if stop_after_epochs is not None and self.current_epoch < c.epochs:
            return self.fold_dir
        self._save(self.fold_dir / "checkpoint_final.pth", lambda: self._checkpoint(self.current_epoch))
        self.logger.write_json()
        if validate and self.is_main:
            self.run_final_validation(validation_checkpoint)
        return self.fold_dir

    def _epochs(self, c, pin: bool, stop_after_epochs: int | None) -> None:
        """The epoch loop: train, validate, log, checkpoint (until the last epoch or `stop_after_epochs`)."""
        from .distributed import all_gather_objects
        from .loader import epoch_loader
        from .progress_plot import write_progress_png
        from .transfer import set_frozen_eval

        n_run = 0
        while self.current_epoch < c.epochs:
            if stop_after_epochs is not None and n_run >= stop_after_epochs:
                return
            epoch = self.current_epoch
            t0 = time.time()
            lr = poly_lr(c.initial_lr, epoch, c.epochs, c.poly_exponent)
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            self.network.train()
            if c.freeze is not None:
                set_frozen_eval(self.network, c.freeze)
            losses = [self.train_step(b) for b in self.train_batches(epoch, pin)]
            self.network.eval()
            vl, tps, fps, fns = [], [], [], []
            if c.val_iterations > 0:
                for b in epoch_loader(self.val_spec, c.val_iterations, self.seed, epoch, stream=self.loader_stream(True),
                                      num_workers=max(1, self.num_workers // 2) if self.num_workers else 0, pin_memory=pin):
                    l_, tp, fp, fn = self.validation_step(b)
                    vl.append(l_)
                    tps.append(tp), fps.append(fp), fns.append(fn)
            # every rank's numbers (nnU-Net's all_gather_object); identity without DDP
            losses = [x for part in all_gather_objects(losses) for x in part]
            vl = [x for part in all_gather_objects(vl) for x in part]
            parts = all_gather_objects((sum(tps), sum(fps), sum(fns)) if tps else None)
            parts = [x for x in parts if x is not None]
            tps, fps, fns = [x[0] for x in parts], [x[1] for x in parts], [x[2] for x in parts]
            if tps:
                tp, fp, fn = sum(tps), sum(fps), sum(fns)
                dice = [float(2 * a / (2 * a + b + d)) if (2 * a + b + d) > 0 else float("nan") for a, b, d in zip(tp, fp, fn)]
                mean_fg = float(np.nanmean(dice)) if not all(math.isnan(x) for x in dice) else float("nan")
            else:
                dice, mean_fg = [], float("nan")
            prev = self.logger.log["ema_fg_dice"]
            ema = mean_fg if not prev or prev[-1] is None or math.isnan(prev[-1]) else 0.9 * prev[-1] + 0.1 * mean_fg
            t1 = time.time()
            L = self.logger
            L.append("train_losses", float(np.mean(losses)))
            L.append("val_losses", float(np.mean(vl)) if vl else float("nan"))
            L.append("dice_per_class_or_region", dice)
            L.append("mean_fg_dice", mean_fg)
            L.append("ema_fg_dice", ema)
            L.append("lrs", lr)
            L.append("epoch_start_timestamps", t0)
            L.append("epoch_end_timestamps", t1)
            self.current_epoch = epoch + 1
            L.line(f"epoch {epoch}: lr {lr:.6g} train_loss {L.log['train_losses'][-1]:.4f} val_loss "
                   f"{L.log['val_losses'][-1]:.4f} pseudo dice {[round(d, 4) for d in dice]} ema {ema:.4f} "
                   f"time {t1 - t0:.1f}s")
            if not math.isnan(ema) and (self._best_ema is None or ema > self._best_ema):
                self._best_ema = ema
                self._save(self.fold_dir / "checkpoint_best.pth", lambda: self._checkpoint(self.current_epoch))
            if self.current_epoch % c.checkpoint_interval == 0 or self.current_epoch == c.epochs:
                self._save(self.fold_dir / "checkpoint_latest.pth", lambda: self._checkpoint(self.current_epoch))
            L.write_json()
            if c.progress_plot and self.is_main:
                write_progress_png(L.log, self.fold_dir, L.line)
            n_run += 1
            if self.on_epoch_end is not None and self.is_main:
                self.on_epoch_end(EpochSummary(epoch, L.log["train_losses"][-1], L.log["val_losses"][-1], dice, ema, lr, t1 - t0))

    def load_pretrained(self, path: str) -> "TransferReport":
        """Load every fitting tensor of ``path`` (ours or nnU-Net's checkpoint; rules in
        :mod:`oxunet.training.transfer`); each mismatch goes to the text log, a rich table (unless
        quiet) and the ``pretrained`` entry of training_log.json."""
        from ..networks import load_nnunet_checkpoint
        from .transfer import TransferError, load_pretrained_weights

        self._build()
        try:
            weights = load_nnunet_checkpoint(path)["network_weights"]
            report = load_pretrained_weights(self.network, weights, source=str(path))
        except (ValueError, FileNotFoundError) as e:
            if isinstance(e, TransferError):
                raise TrainingError(str(e)) from None
            raise TrainingError(f"--pretrained: {e}") from None
        self.transfer_report = report
        logger = getattr(self, "logger", None)
        if logger is not None:
            for line in report.lines():
                logger.line(line)
            logger.extra["pretrained"] = report.to_dict()
        if not self.quiet and (report.adapted or report.reinitialised or report.unused):
            from rich.console import Console

            Console(stderr=True).print(report.rich_table())
        return report

    # ------------------------------------------------------------------ final validation
    def run_final_validation(self, checkpoint: str = "checkpoint_final.pth") -> dict:
        """The fold's final validation with ``checkpoint`` (``--val`` / ``--val-best``); returns the summary."""
        return self.validate(checkpoint)

    def validate(self, checkpoint: str = "checkpoint_final.pth", save_probabilities: bool | None = None) -> dict:
        """Final validation as nnU-Net's: the predictor exports each validation case to the
        original geometry in ``fold_X/validation`` and ``summary.json`` scores them against the
        raw ground truth (see :mod:`oxunet.training.validation`)."""
        from .cascade import CascadeError
        from .validation import ValidationError, validate_fold

        self._build(distributed=False)
        try:
            if save_probabilities is None:  # --npz sets the attribute
                save_probabilities = getattr(self, "export_probabilities", False)
            summary = validate_fold(self, checkpoint, save_probabilities=save_probabilities)
        except (ValidationError, CascadeError) as e:
            raise TrainingError(str(e)) from None
        if getattr(self, "logger", None) is not None:
            self.logger.line(f"validation mean foreground Dice {summary['foreground_mean'].get('Dice')}")
        return summary


def online_tp_fp_fn(output: torch.Tensor, target: torch.Tensor, is_regions: bool, ignore_label: int | None):
    """nnU-Net's validation_step statistics from the highest-resolution output (background dropped for labels)."""
    axes = [0] + list(range(2, output.ndim))
    if is_regions:
        pred = (torch.sigmoid(output) > 0.5).float()
        if ignore_label is not None:
            mask = (1 - target[:, -1:]).float()
            target = target[:, :-1]
        else:
            mask = None
    else:
        pred = torch.zeros_like(output).scatter_(1, output.argmax(1, keepdim=True), 1)
        t = target.long()
        if ignore_label is not None:
            mask = (t != ignore_label).float()
            t = torch.where(t == ignore_label, torch.zeros_like(t), t)
        else:
            mask = None
        target = torch.zeros_like(output).scatter_(1, t, 1)
    target = target.float()
    if mask is not None:
        pred, target = pred * mask, target * mask
    tp = (pred * target).sum(axes)
    fp = (pred * (1 - target)).sum(axes)
    fn = ((1 - pred) * target).sum(axes)
    if not is_regions:
        tp, fp, fn = tp[1:], fp[1:], fn[1:]
    return tp.cpu().numpy(), fp.cpu().numpy(), fn.cpu().numpy()
