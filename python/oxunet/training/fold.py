"""The setup step of training: what one (dataset, configuration, fold) trains on, read and checked
without writing anything and without torch.

:func:`read_fold_context` reads the plans, dataset.json, the preprocessed case list and the fold's
split, and names the first problem it finds (:class:`TrainingError`). The returned
:class:`FoldContext` is all that the epoch loop and the final validation need to know about the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..dataset import DatasetInfo, Paths, dataset_name, load_dataset_json
from ..planning import Configuration, Plans, PlansError
from ..preprocessing.storage import list_cases, open_case


class TrainingError(RuntimeError):
    """Bad training input (missing folders, unknown fold, plans/dataset mismatch); names the problem."""


def fold_value(fold: int | str) -> int | str:
    if isinstance(fold, int) and not isinstance(fold, bool) and fold >= 0:
        return fold
    if isinstance(fold, str) and (fold == "all" or fold.isdigit()):
        return fold if fold == "all" else int(fold)
    raise TrainingError(f"fold: expected a non-negative integer or 'all', got {fold!r}")


@dataclass(frozen=True)
class FoldContext:
    """One fold's inputs and output folders (read-only)."""

    dataset_name: str
    pre_dir: Path  # <preprocessed>/<dataset>
    plans_model: Plans  # typed, parsed and checked once
    configuration: Configuration  # typed, inherits_from applied
    plans_name: str
    configuration_name: str
    info: DatasetInfo
    data_dir: Path  # preprocessed cases of this configuration
    cases: tuple[str, ...]
    fold: int | str
    train_keys: tuple[str, ...]
    val_keys: tuple[str, ...]
    trainer_name: str
    output_root: Path  # <results>/<dataset>/<trainer>__<plans>__<configuration>
    prev_stage_dir: Path | None  # cascade: the previous stage's predicted_next_stage folder

    @property
    def plans(self) -> dict:
        """The plans as a plain dict (for stages that still take one)."""
        return self._plain("plans", self.plans_model.raw)

    @property
    def cfg(self) -> dict:
        """The resolved configuration as a plain dict."""
        return self._plain("cfg", self.configuration.to_dict())

    def _plain(self, key: str, value: dict) -> dict:
        cache = self.__dict__.setdefault("_plain_cache", {})  # one plain copy per context
        return cache.setdefault(key, value)

    def write_default_splits(self) -> None:
        """nnU-Net's default 5-fold ``splits_final.json`` when the dataset has none yet (the run's first write)."""
        from .splits import SPLITS_FILE, kfold_splits, write_splits

        path = self.pre_dir / SPLITS_FILE
        if self.fold != "all" and not path.is_file():
            write_splits(path, kfold_splits(list(self.cases)))

    @property
    def fold_dir(self) -> Path:
        return self.output_root / f"fold_{self.fold}"

    @property
    def previous_stage(self) -> str | None:
        return self.configuration.previous_stage

    @property
    def num_input_channels(self) -> int:
        """nnU-Net's determine_num_input_channels: image channels (+ foreground labels for a cascade stage)."""
        return self.info.num_channels + (len(self.info.foreground_labels) if self.previous_stage else 0)

    @property
    def patch_size(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.configuration.patch_size)


def read_fold_context(dataset: str | int, configuration: str, fold: int | str, paths: Paths, *,
                      trainer_name: str = "nnUNetTrainer", plans_name: str = "nnUNetPlans") -> FoldContext:
    """Reads and checks everything a training of ``fold`` needs; writes nothing."""
    fold = fold_value(fold)
    if paths.preprocessed is None:
        raise TrainingError("no preprocessed folder: set nnUNet_preprocessed / OXUNET_PREPROCESSED or pass --preprocessed-dir")
    if paths.results is None:
        raise TrainingError("no results folder: set nnUNet_results / OXUNET_RESULTS or pass --results-dir")
    try:
        name = dataset_name(dataset, paths)
    except LookupError as e:
        raise TrainingError(str(e)) from None
    pre_dir = Path(paths.preprocessed) / name
    plans_path = pre_dir / f"{plans_name}.json"
    if not plans_path.is_file():
        raise TrainingError(f"{plans_path}: plans file not found (run `oxunet plan-and-preprocess -d {dataset}` first)")
    try:
        plans = Plans.load(plans_path)
        cfg = plans.configuration(configuration)
    except PlansError as e:
        raise TrainingError(str(e)) from None
    if plans.dataset_name not in (None, name):
        raise TrainingError(f"{plans_path}: plans are for dataset {plans.dataset_name!r}, not {name!r}")
    ds_json = pre_dir / "dataset.json"
    if not ds_json.is_file():
        raise TrainingError(f"{ds_json}: dataset.json missing from the preprocessed dataset folder")
    info = load_dataset_json(ds_json)
    data_dir = pre_dir / cfg.data_identifier
    if not data_dir.is_dir():
        raise TrainingError(f"{data_dir}: preprocessed data for configuration {configuration!r} not found "
                            f"(run `oxunet preprocess -d {dataset} -c {configuration}`)")
    cases = list_cases(data_dir)
    if not cases:
        raise TrainingError(f"{data_dir}: no complete preprocessed cases")
    first = open_case(data_dir, cases[0])
    if first.data.shape[0] != info.num_channels:
        raise TrainingError(f"{data_dir}: cases have {first.data.shape[0]} channel(s) but {ds_json} declares "
                            f"{info.num_channels}: plans/preprocessed data and dataset.json do not match")
    if cfg.dim not in (2, 3):
        raise TrainingError(f"{plans_path}: configurations.{configuration}.patch_size {list(cfg.patch_size)} must have 2 or 3 axes")

    from .splits import train_val_keys

    try:
        train_keys, val_keys = train_val_keys(pre_dir, cases, fold, write=False)  # the run writes the file
    except ValueError as e:
        raise TrainingError(str(e)) from None
    missing = sorted(set(train_keys + val_keys) - set(cases))
    if missing:
        raise TrainingError(f"{pre_dir / 'splits_final.json'}: fold {fold} names case(s) not preprocessed "
                            f"in {data_dir}: {missing[:5]}")
    output_root = Path(paths.results) / name / f"{trainer_name}__{plans_name}__{configuration}"
    prev_stage_dir = None
    if cfg.previous_stage:
        prev_stage_dir = _previous_stage_dir(plans, cfg.previous_stage, configuration, output_root, dataset,
                                             trainer_name, plans_name, list(train_keys) + list(val_keys))
    return FoldContext(name, pre_dir, plans, cfg, plans_name, configuration, info, data_dir, tuple(cases), fold,
                       tuple(train_keys), tuple(val_keys), trainer_name, output_root, prev_stage_dir)


def _previous_stage_dir(plans: Plans, previous_stage: str, configuration: str, output_root: Path, dataset,
                        trainer_name: str, plans_name: str, keys: list[str]) -> Path:
    """Cascade: the previous stage's ``predicted_next_stage`` folder (nnU-Net: same trainer and
    plans); every case of this fold must have its segmentation there."""
    from .cascade import missing_message, predicted_next_stage_dir, stage_segmentation_file

    if previous_stage not in plans.configurations:
        raise TrainingError(f"configuration {configuration!r}: previous_stage {previous_stage!r} "
                            f"is not a configuration of the plans")
    folder = predicted_next_stage_dir(output_root.parent, trainer_name, plans_name, previous_stage, configuration)
    missing = [c for c in keys if stage_segmentation_file(folder, c) is None]
    if missing:
        raise TrainingError(missing_message(folder, missing, previous_stage, str(dataset), trainer_name, plans_name))
    return folder
