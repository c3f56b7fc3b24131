"""nnU-Net's ``nnUNetTrainer`` (spec §13) in parts.

* setup (:mod:`.fold`): :func:`read_fold_context` reads plans, dataset.json, cases and the split;
* build (:meth:`Trainer.build`): network, loss, optimizer, precision, augmentation and loaders, each
  from an overridable hook (``build_network``, ``build_loss``, ``build_optimizer``,
  ``build_augmentation``) so a subclass (``-tr module:Class``, :mod:`.plugins`) changes one piece;
* the epoch loop (:mod:`.loop`): steps, metrics, logging, best/latest checkpoints;
* final validation (:mod:`.validation`): a fold context and a checkpoint, nothing else.

How the run is executed (device, ``--npz``, ``--val-best``, precision, compile, workers, continue,
pretrained) is a :class:`~.run_options.RunOptions`, which every DDP rank receives.

Resume: the schedule is a function of (epoch, total epochs); continuing with a larger ``epochs``
recomputes it over the new total from the next epoch on (nnU-Net behaves the same). Batches are a
pure function of (seed, epoch, workers), so 1 + continue 1 epochs give the same weights as 2
straight epochs (same device, workers, precision).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, cast

import numpy as np
import torch

from ..dataset import Paths
from .checkpoint import CHECKPOINT_NAMES, find_resume_checkpoint, restore_rng_states, rng_states, save_checkpoint
from .config import TrainerConfig
from .fold import TrainingError, read_fold_context
from .logger import TrainingLogger
from .loop import EpochSummary, online_tp_fp_fn, run_epochs
from .precision import PrecisionError, autocast, check_precision, make_grad_scaler, resolve_precision, training_step
from .run_options import RunOptions
from .schedule import poly_lr  # noqa: F401 (public name, kept here for callers)

if TYPE_CHECKING:
    from .loader import PersistentLoader

CHECKPOINT_FORMAT = "oxunet-checkpoint"


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


class Trainer:
    """One (dataset, configuration, fold) training run. ``run()`` trains (or resumes) and validates.

    Hooks a subclass may override (each called once by :meth:`build`): :meth:`build_network`,
    :meth:`build_loss`, :meth:`build_optimizer`, :meth:`build_augmentation`; and :meth:`batches`,
    where every batch is fetched before its step.
    """

    _train_loader: "PersistentLoader | None" = None  # the persistent training workers, once started

    def __init__(
        self,
        dataset: str | int,
        configuration: str,
        fold: int | str,
        *,
        paths: Paths,
        config: TrainerConfig | None = None,
        plans_name: str = "nnUNetPlans",
        device: str | torch.device | None = None,
        quiet: bool | None = None,
        on_epoch_end: Callable[[EpochSummary], None] | None = None,
        options: RunOptions | None = None,
    ):
        options = options or RunOptions()
        changes = {k: v for k, v in (("device", None if device is None else str(device)), ("quiet", quiet)) if v is not None}
        self.options = options.replace(**changes) if changes else options
        self.config = self.options.apply_to(config or TrainerConfig())
        self.ctx = read_fold_context(dataset, configuration, fold, paths, trainer_name=self.config.name,
                                     plans_name=plans_name)
        self.device = torch.device(self.options.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise TrainingError("device cuda requested but torch sees no CUDA device")
        self.quiet, self.on_epoch_end = self.options.quiet, on_epoch_end
        from .distributed import local_rank, rank, world_size

        # DDP (oxunet.training.distributed): joined before the Trainer is made (launch / torchrun)
        self.rank, self.world_size = rank(), world_size()
        self.is_main = self.rank == 0
        if self.device.type == "cuda" and self.world_size > 1 and self.device.index is None:
            self.device = torch.device("cuda", local_rank())
        self._built = False
        self.logger: TrainingLogger | None = None
        self.best_ema: float | None = None
        self.current_epoch = 0
        self.seed: int | None = None

    # ------------------------------------------------------------------ what the fold context holds
    # (read-only views, kept as attributes for callers of the first version)
    @property
    def run_seed(self) -> int:
        """The run's seed; set when training starts (or from a resumed checkpoint)."""
        if self.seed is None:
            raise RuntimeError("the seed is set when training starts (run_training)")
        return self.seed

    @property
    def log(self) -> TrainingLogger:
        """The training logger; it exists once :meth:`run_training` has set up the fold."""
        if self.logger is None:
            raise RuntimeError("the training logger is created when training starts (run_training)")
        return self.logger

    @property
    def dataset_name(self) -> str:
        return self.ctx.dataset_name

    @property
    def pre_dir(self) -> Path:
        return self.ctx.pre_dir

    @property
    def plans(self) -> dict:
        return self.ctx.plans

    @property
    def plans_name(self) -> str:
        return self.ctx.plans_name

    @property
    def configuration_name(self) -> str:
        return self.ctx.configuration_name

    @property
    def cfg(self) -> dict:
        """The resolved configuration as a plain dict (typed: ``self.ctx.configuration``)."""
        return self.ctx.cfg

    @property
    def info(self):
        return self.ctx.info

    @property
    def data_dir(self) -> Path:
        return self.ctx.data_dir

    @property
    def fold(self):
        return self.ctx.fold

    @property
    def train_keys(self) -> list[str]:
        return list(self.ctx.train_keys)

    @property
    def val_keys(self) -> list[str]:
        return list(self.ctx.val_keys)

    @property
    def output_root(self) -> Path:
        return self.ctx.output_root

    @property
    def fold_dir(self) -> Path:
        return self.ctx.fold_dir

    @property
    def previous_stage(self) -> str | None:
        return self.ctx.previous_stage

    @property
    def prev_stage_dir(self) -> Path | None:
        return self.ctx.prev_stage_dir

    @property
    def num_input_channels(self) -> int:
        return self.ctx.num_input_channels

    @property
    def export_probabilities(self) -> bool:
        return self.options.export_probabilities

    @export_probabilities.setter
    def export_probabilities(self, value: bool) -> None:
        self.options = self.options.replace(export_probabilities=bool(value))

    # ------------------------------------------------------------------ batch and ranks
    @property
    def global_batch_size(self) -> int:
        """The plan's (or ``--batch-size``) batch: split across DDP ranks."""
        return int(self.config.batch_size or self.ctx.configuration.batch_size)

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
        return self.config.oversample_for(self.global_batch_size)

    # ------------------------------------------------------------------ build hooks
    def architecture(self) -> dict:
        """The plans' architecture with this config's changes (``norm``, ``network``); recorded in
        every checkpoint so prediction rebuilds the same network."""
        from .parts import effective_architecture

        try:
            return effective_architecture(self.ctx.configuration.architecture.to_dict(), self.config)
        except ValueError as e:
            raise TrainingError(str(e)) from None

    def build_network(self, architecture: dict, num_input_channels: int, num_outputs: int,
                      deep_supervision: bool) -> torch.nn.Module:
        """The network, initialised (nnU-Net's He init for ours)."""
        from ..networks import build_network

        return build_network(architecture, num_input_channels, num_outputs, deep_supervision=deep_supervision)

    def build_loss(self, num_outputs: int | None, ds_weights: list[float] | None) -> torch.nn.Module:
        """The training loss; ``num_outputs``: deep-supervision outputs (None without)."""
        from .losses import build_loss

        c = self.config
        batch_dice = self.ctx.configuration.batch_dice if c.batch_dice is None else c.batch_dice
        return build_loss(c.loss, batch_dice=batch_dice, is_regions=self.info.has_regions,
                          ignore_label=self.info.ignore_label, smooth=c.loss_smooth, num_outputs=num_outputs,
                          deep_supervision_weights=ds_weights, topk_percent=c.topk_percent,
                          label_smoothing=c.label_smoothing)

    def build_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The optimizer over the trainable parameters (the LR is set per epoch by the schedule)."""
        from .optim import build_optimizer

        return build_optimizer(self.config, params)

    def build_augmentation(self, ds_scales):
        """(training augmenter, validation augmenter, augmentation setup, test-time mirror axes)."""
        from .parts import build_augmentation

        try:
            return build_augmentation(self.config, self.ctx, ds_scales)
        except ValueError as e:
            raise TrainingError(str(e)) from None

    # ------------------------------------------------------------------ build
    def build(self, distributed: bool = True) -> None:
        """Network, loss, optimizer, loaders. ``distributed=False``: no DDP wrapper even in a DDP
        run (rank 0 alone must not enter DDP's collective construction)."""
        if self._built:
            return
        from .loader import LoaderSpec
        from .losses import deep_supervision_scales
        from .transfer import TransferError, apply_freeze

        c, info = self.config, self.info
        self.architecture_used = self.architecture()
        self.network = self.build_network(self.architecture_used, self.num_input_channels,
                                          info.num_segmentation_heads, c.deep_supervision).to(self.device)
        strides = [list(s) for s in self.ctx.configuration.architecture.strides]
        n_out = len(strides) - 1
        self.ds_scales = deep_supervision_scales(strides) if c.deep_supervision else None
        ds_weights = c.deep_supervision_weights if c.deep_supervision else None
        if self.world_size > 1 and c.deep_supervision and ds_weights is None:
            # nnU-Net under DDP: the lowest output gets 1e-6 instead of 0 (DDP rejects parameters without a
            # gradient). nnU-Net keeps 0 when it compiles; we use 1e-6 then too (same loss to 1e-6, no risk)
            w = [1 / 2**i for i in range(n_out)]
            w[-1] = 1e-6 if n_out > 1 else w[-1]
            ds_weights = [x / sum(w) for x in w]
        try:
            self.loss = self.build_loss(n_out if c.deep_supervision else None, ds_weights)
        except ValueError as e:
            raise TrainingError(f"trainer {c.name!r}: {e}") from None
        try:
            self.frozen_parameters = apply_freeze(self.network, c.freeze)
        except TransferError as e:
            raise TrainingError(str(e)) from None
        # frozen parameters stay out of the optimizer (no momentum / weight decay on them)
        self.optimizer = self.build_optimizer(self._trainable_params())
        self.precision = resolve_precision(c.precision, self.device)
        try:
            check_precision(self.precision, self.device)
        except PrecisionError as e:
            raise TrainingError(str(e)) from None
        self.grad_scaler = make_grad_scaler(self.precision, self.device)
        train_aug, val_aug, setup, self.inference_allowed_mirroring_axes = self.build_augmentation(self.ds_scales)
        if self.prev_stage_dir is not None:
            self._unpack_previous_stage()
        patch = self.ctx.patch_size
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
        self._forward = torch.compile(self.network) if self.compiled else self.network
        if self.world_size > 1 and distributed:
            from torch.nn.parallel import DistributedDataParallel

            from .losses import enable_ddp_gather

            enable_ddp_gather(self.loss)
            ids = [self.device.index] if self.device.type == "cuda" else None
            # DDP broadcasts rank 0's initial weights; gradients are averaged over ranks
            unused = any(w == 0 for w in ds_weights or ())  # user weights that skip outputs
            self._forward = DistributedDataParallel(self._forward, device_ids=ids, find_unused_parameters=unused)
        self._built = True

    _build = build  # the first version's name (benches, tests)

    def _unpack_previous_stage(self) -> None:
        from .cascade import CascadeError, unpack_stage_segmentations

        try:
            unpack_stage_segmentations(cast(Path, self.prev_stage_dir), self.train_keys + self.val_keys)  # memory maps for the loader
        except CascadeError as e:
            raise TrainingError(str(e)) from None

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_dict(self, epoch_next: int) -> dict[str, Any]:
        return {
            "network_weights": self.network.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "logging": self.log.log,
            "_best_ema": self.best_ema,
            "current_epoch": epoch_next,
            "init_args": {"plans": self.plans, "configuration": self.configuration_name, "fold": self.fold,
                          "dataset_json": self.info.raw, "device": str(self.device)},
            "trainer_name": self.config.name,
            "inference_allowed_mirroring_axes": self.inference_allowed_mirroring_axes,
            "oxunet": {"format": CHECKPOINT_FORMAT, "version": 1, "trainer_config": self.config.to_dict(),
                       "seed": self.seed, "rng_states": rng_states(), "plans_name": self.plans_name,
                       "pretrained": self.log.extra.get("pretrained"), "architecture": self.architecture_used,
                       "trainer_class": _class_path(type(self))},
        }

    def save_checkpoint(self, name: str) -> None:
        """Only rank 0 writes checkpoints (the dict is built only there)."""
        if self.is_main:
            save_checkpoint(self.fold_dir / name, self.checkpoint_dict(self.current_epoch))

    def load_checkpoint(self, path: Path) -> None:
        from ..networks import load_nnunet_checkpoint

        ck = load_nnunet_checkpoint(path, map_location=self.device)
        self.network.load_state_dict(ck["network_weights"])
        self.optimizer.load_state_dict(ck["optimizer_state"])
        if self.grad_scaler is not None and ck.get("grad_scaler_state"):
            self.grad_scaler.load_state_dict(ck["grad_scaler_state"])
        self.current_epoch = int(ck["current_epoch"])
        self.best_ema = ck.get("_best_ema")
        self.log.load(ck.get("logging", {}), self.current_epoch)
        ours = ck.get("oxunet") or {}
        if ours.get("seed") is not None:
            self.seed = int(ours["seed"])
        if ours.get("rng_states"):
            restore_rng_states(ours["rng_states"])
        if ours.get("pretrained"):
            self.log.extra["pretrained"] = ours["pretrained"]

    # ------------------------------------------------------------------ output folder
    def _prepare_output(self) -> None:
        self.ctx.write_default_splits()
        self.fold_dir.mkdir(parents=True, exist_ok=True)
        for name, target in (("plans.json", f"{self.plans_name}.json"), ("dataset.json", "dataset.json"),
                             ("dataset_fingerprint.json", "dataset_fingerprint.json")):
            src = self.pre_dir / target
            if src.is_file():
                shutil.copyfile(src, self.output_root / name)
        debug = {"trainer_config": self.config.to_dict(), "run_options": _plain(self.options),
                 "trainer_class": _class_path(type(self)), "dataset": self.dataset_name,
                 "configuration": self.configuration_name, "fold": self.fold, "plans_name": self.plans_name,
                 "device": str(self.device), "precision": self.precision, "compiled": self.compiled,
                 "world_size": self.world_size, "global_batch_size": self.global_batch_size,
                 "batch_size": self.batch_size, "num_workers": self.num_workers, "seed": self.seed,
                 "augment_on": self.augment_on,
                 "patch_size": list(self.ctx.patch_size), "initial_patch_size": list(self.train_spec.patch_size),
                 "architecture": self.architecture_used, "train_cases": len(self.train_keys),
                 "val_cases": len(self.val_keys), "hostname": platform.node(), "torch_version": torch.__version__,
                 "gpu_name": torch.cuda.get_device_name() if self.device.type == "cuda" else None}
        (self.fold_dir / "debug.json").write_text(json.dumps(debug, indent=1, default=str))

    # ------------------------------------------------------------------ steps
    def _autocast(self):
        return autocast(self.precision, self.device)

    def batches(self, epoch: int, validation: bool) -> Iterator[dict]:
        """This epoch's batches: the one place the loop fetches them (training: :meth:`train_batches`,
        augmented in the workers or, with ``--augment-on device``, on the device before the step)."""
        from .loader import epoch_loader

        pin = self.device.type == "cuda"
        if validation:
            workers = max(1, self.num_workers // 2) if self.num_workers else 0
            return iter(epoch_loader(self.val_spec, self.config.val_iterations, self.run_seed, epoch,
                                     stream=self.loader_stream(True), num_workers=workers, pin_memory=pin))
        return iter(self.train_batches(epoch, pin))

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
                pl = self._train_loader = PersistentLoader(self.train_spec, c.iterations_per_epoch, self.run_seed, epoch,
                                                           max(c.epochs, epoch + 1), stream=self.loader_stream(False),
                                                           num_workers=n, pin_memory=pin_memory)
                self._train_loader_workers = n
            batches = pl.epoch(epoch)
        else:
            batches = epoch_loader(self.train_spec, c.iterations_per_epoch, self.run_seed, epoch,
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

    # ------------------------------------------------------------------ run
    def run(self, *, continue_training: bool | None = None, stop_after_epochs: int | None = None,
            validate: bool | None = None, pretrained: str | None = None,
            validation_checkpoint: str | None = None) -> Path:
        """Trains from scratch or resumes, then validates; keyword arguments override this run's
        :class:`RunOptions`. Returns the fold folder."""
        changes = {k: v for k, v in (("continue_training", continue_training), ("stop_after_epochs", stop_after_epochs),
                                     ("validate", validate), ("pretrained", pretrained),
                                     ("validation_checkpoint", validation_checkpoint)) if v is not None}
        try:
            self.options = self.options.replace(**changes)
        except ValueError as e:
            raise TrainingError(str(e)) from None
        o, c = self.options, self.config
        from .distributed import broadcast_object

        seed = c.seed if c.seed is not None else int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        self.seed = int(broadcast_object(seed))  # one seed for all ranks
        torch.manual_seed(self.seed)
        self.build()
        self.logger = TrainingLogger(self.fold_dir, self.quiet, enabled=self.is_main)
        self.best_ema, self.current_epoch = None, 0
        if self.is_main:
            self._prepare_output()
        if o.continue_training:
            ck = find_resume_checkpoint(self.fold_dir)
            if ck is not None:
                self.load_checkpoint(ck)
                self.logger.line(f"resumed from {ck.name} at epoch {self.current_epoch}")
            else:
                msg = (f"--continue: no checkpoint in {self.fold_dir} (looked for {', '.join(CHECKPOINT_NAMES)}): "
                       "starting from scratch")
                self.logger.line(msg)
                if self.is_main:  # the log file alone would leave it silent
                    print(f"warning: {msg}", file=sys.stderr)
        elif o.pretrained:
            self.load_pretrained(o.pretrained)
        try:
            finished = run_epochs(self, o.stop_after_epochs)
        finally:
            self.close_loaders()  # persistent training workers end with the run
        if not finished:
            return self.fold_dir
        self.save_checkpoint("checkpoint_final.pth")
        self.logger.write_json()
        if o.validate and self.is_main:
            self.run_final_validation(o.validation_checkpoint)
        return self.fold_dir

    def load_pretrained(self, path: str):
        """Load every fitting tensor of ``path`` (ours or nnU-Net's checkpoint; rules in
        :mod:`oxunet.training.transfer`); each mismatch goes to the text log, a rich table (unless
        quiet) and the ``pretrained`` entry of training_log.json."""
        from ..networks import load_nnunet_checkpoint
        from .transfer import TransferError, load_pretrained_weights

        self.build()
        try:
            weights = load_nnunet_checkpoint(path)["network_weights"]
            report = load_pretrained_weights(self.network, weights, source=str(path))
        except (ValueError, FileNotFoundError) as e:
            if isinstance(e, TransferError):
                raise TrainingError(str(e)) from None
            raise TrainingError(f"--pretrained: {e}") from None
        self.transfer_report = report
        if self.logger is not None:
            for line in report.lines():
                self.logger.line(line)
            self.logger.extra["pretrained"] = report.to_dict()
        if not self.quiet and (report.adapted or report.reinitialised or report.unused):
            from rich.console import Console

            Console(stderr=True).print(report.rich_table())
        return report

    # ------------------------------------------------------------------ final validation
    def run_final_validation(self, checkpoint: str | None = None) -> dict:
        """The fold's final validation with ``checkpoint`` (``--val`` / ``--val-best``); returns the summary."""
        return self.validate(checkpoint or self.options.validation_checkpoint)

    def validate(self, checkpoint: str = "checkpoint_final.pth", save_probabilities: bool | None = None) -> dict:
        """Final validation as nnU-Net's, from the fold context and ``checkpoint`` alone (see
        :mod:`oxunet.training.validation`): builds only the network it predicts with."""
        from .validation import ValidationError, validate_fold

        if save_probabilities is None:
            save_probabilities = self.options.export_probabilities
        precision = resolve_precision(self.config.precision, self.device)
        try:
            summary = validate_fold(self.ctx, self.fold_dir / checkpoint, device=str(self.device), precision=precision,
                                    save_probabilities=save_probabilities,
                                    log=self.logger.line if self.logger is not None else None)
        except ValidationError as e:
            raise TrainingError(str(e)) from None
        if self.logger is not None:
            self.logger.line(f"validation mean foreground Dice {summary['foreground_mean'].get('Dice')}")
        from ..report import report_after_validation

        report_after_validation(self.output_root, self.logger.line if self.logger is not None else None)
        return summary


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _plain(options: RunOptions) -> dict:
    import dataclasses

    return dataclasses.asdict(options)
