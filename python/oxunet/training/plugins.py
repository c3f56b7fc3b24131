"""``-tr module:Name``: user code without forking oxunet.

``Name`` may be

* a function (or any callable) returning a :class:`~.config.TrainerConfig`: a variant as data;
* a :class:`~.trainer.Trainer` subclass: a variant with code. It overrides any of the build hooks
  (``build_network``, ``build_loss``, ``build_optimizer``, ``build_augmentation``; also ``batches``)
  and may set ``default_config`` (a TrainerConfig or a dict of its fields) as its starting point.
  A subclass that builds a network other than the plans' should also override ``architecture()``
  to name a registered network (:mod:`oxunet.networks.registry`), so ``oxunet predict`` can
  rebuild it from the checkpoint.

The module must be importable (installed, or on ``PYTHONPATH``); ``-tr`` is the user's own command
line, so the module it names is imported (model folders never are: see the network registry).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from .config import TrainerConfig, TrainerConfigError, builtin_config, load_trainer_config


TRAINER_ENTRY_POINT_GROUP = "oxunet.trainers"


def registered_trainers() -> dict[str, str]:
    """name → "module:Factory" of every installed ``oxunet.trainers`` entry point (a package's
    ``[project.entry-points."oxunet.trainers"]``); ``-tr NAME`` resolves these after the built-in
    variants."""
    return {ep.name: ep.value for ep in entry_points(group=TRAINER_ENTRY_POINT_GROUP)}


def _import(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise TrainerConfigError(f"trainer {spec!r}: expected module:Name")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise TrainerConfigError(f"trainer {spec!r}: cannot import {module!r} ({e})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TrainerConfigError(f"trainer {spec!r}: module {module!r} has no {attr!r}") from None
    return obj


def _is_trainer_class(obj: Any) -> bool:
    from .trainer import Trainer  # torch: only for class specs

    return isinstance(obj, type) and issubclass(obj, Trainer)


def config_of_trainer_class(cls: type) -> TrainerConfig:
    """A Trainer subclass's ``default_config`` (TrainerConfig, dict, or a built-in name), named after it."""
    base = getattr(cls, "default_config", None)
    if base is None:
        return TrainerConfig(name=cls.__name__)
    if isinstance(base, TrainerConfig):
        return base.replace(name=base.name if base.name != "nnUNetTrainer" else cls.__name__)
    if isinstance(base, str):
        return builtin_config(base).replace(name=cls.__name__)
    if isinstance(base, dict):
        return TrainerConfig.from_dict({"name": cls.__name__, **base}, f"{cls.__qualname__}.default_config")
    raise TrainerConfigError(f"{cls.__qualname__}.default_config must be a TrainerConfig, dict or variant name")


def load_trainer_plugin(spec: str) -> TrainerConfig:
    """The TrainerConfig ``module:Name`` describes (a factory's result or a subclass's defaults)."""
    obj = _import(spec)
    if isinstance(obj, type) and _is_trainer_class(obj):
        return config_of_trainer_class(obj)
    if isinstance(obj, TrainerConfig):
        return obj
    if callable(obj):
        cfg = obj()
        if not isinstance(cfg, TrainerConfig):
            raise TrainerConfigError(f"trainer {spec!r}: the factory returned {type(cfg).__name__}, not a TrainerConfig")
        return cfg
    raise TrainerConfigError(f"trainer {spec!r}: expected a TrainerConfig factory or a Trainer subclass")


def trainer_class_for(spec: str):
    """The Trainer class ``-tr`` names: the subclass for ``module:Class`` specs, else oxunet's Trainer."""
    from .trainer import Trainer

    text = str(spec)
    if ":" not in text and not text.endswith(".json"):
        from .variants import VARIANTS

        if text not in VARIANTS:
            text = registered_trainers().get(text, text)
    if ":" in text and not text.endswith(".json"):
        obj = _import(text)
        if _is_trainer_class(obj):
            return obj
    return Trainer


__all__ = ["TRAINER_ENTRY_POINT_GROUP", "config_of_trainer_class", "load_trainer_config", "load_trainer_plugin", "registered_trainers",
           "trainer_class_for"]
