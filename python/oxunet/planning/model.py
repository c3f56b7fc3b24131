"""The typed plans model: a plans file parsed and validated once into frozen dataclasses.

:meth:`Plans.load` / :meth:`Plans.from_dict` check the whole file (errors name the file and the
field) and give every configuration resolved (``inherits_from`` applied) as a
:class:`Configuration` with its :class:`Architecture`. :meth:`Plans.to_dict` gives back the JSON
document as read, field for field and in the same key order (configurations keep their own,
unresolved entries), so reading an nnunetv2 ``plans.json`` and writing it back is the same file, and
nnunetv2's ``PlansManager`` loads what we write.

Stages take either a ``Plans`` or the raw dict (``as_plans`` / ``Plans.raw``) while they move over.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .plans import JSON_INDENT, PlansError, resolve_configuration, validate_plans

_TOP_FIELDS = ("dataset_name", "plans_name", "original_median_spacing_after_transp",
               "original_median_shape_after_transp", "image_reader_writer", "transpose_forward", "transpose_backward",
               "experiment_planner_used", "label_manager", "foreground_intensity_properties_per_channel")


def _frozen(value: Any) -> Any:
    """Read-only view of nested JSON (dicts → mapping proxies, lists → tuples)."""
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """Inverse of :func:`_frozen`: JSON-ready dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Architecture:
    """A configuration's ``architecture`` entry (dynamic-network-architectures' layout)."""

    network_class_name: str
    arch_kwargs: Mapping[str, Any]
    kw_requires_import: tuple[str, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> "Architecture":
        name = d.get("network_class_name")
        if not isinstance(name, str) or not name:
            raise PlansError(f"{where}.architecture.network_class_name: expected a class name, got {name!r}")
        kwargs = d.get("arch_kwargs")
        if not isinstance(kwargs, Mapping):
            raise PlansError(f"{where}.architecture.arch_kwargs: expected an object, got {type(kwargs).__name__}")
        req = d.get("_kw_requires_import", ())
        if not isinstance(req, (list, tuple)) or not all(isinstance(k, str) for k in req):
            raise PlansError(f"{where}.architecture._kw_requires_import: expected a list of names, got {req!r}")
        return cls(name, _frozen(dict(kwargs)), tuple(req))

    def to_dict(self) -> dict[str, Any]:
        """The plans entry (what ``oxunet.networks.build_network`` takes)."""
        return {"network_class_name": self.network_class_name, "arch_kwargs": _plain(self.arch_kwargs),
                "_kw_requires_import": list(self.kw_requires_import)}

    @property
    def strides(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(s) for s in self.arch_kwargs["strides"])


@dataclass(frozen=True)
class Configuration:
    """One configuration, resolved (``inherits_from`` applied)."""

    name: str
    data_identifier: str
    preprocessor_name: str
    batch_size: int
    patch_size: tuple[int, ...]
    spacing: tuple[float, ...]
    median_image_size_in_voxels: tuple[float, ...] | None
    normalization_schemes: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    resampling_fn_data: str
    resampling_fn_seg: str
    resampling_fn_probabilities: str
    resampling_fn_data_kwargs: Mapping[str, Any]
    resampling_fn_seg_kwargs: Mapping[str, Any]
    resampling_fn_probabilities_kwargs: Mapping[str, Any]
    architecture: Architecture
    batch_dice: bool
    previous_stage: str | None
    next_stage: tuple[str, ...]
    inherits_from: str | None
    resolved: Mapping[str, Any]  # every key of the resolved entry (read-only), for code reading others

    @classmethod
    def from_resolved(cls, name: str, d: dict, where: str) -> "Configuration":
        def field(key: str, kind, default=None, required=True):
            if key not in d:
                if required:
                    raise PlansError(f"{where}.{key}: missing")
                return default
            value = d[key]
            if kind is not None and not isinstance(value, kind) or isinstance(value, bool) and kind is int:
                names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
                raise PlansError(f"{where}.{key}: expected {names}, got {value!r}")
            return value

        nxt = d.get("next_stage") or ()
        return cls(
            name=name,
            data_identifier=field("data_identifier", str),
            preprocessor_name=field("preprocessor_name", str),
            batch_size=field("batch_size", int),
            patch_size=tuple(field("patch_size", (list, tuple))),
            spacing=tuple(float(s) for s in field("spacing", (list, tuple))),
            median_image_size_in_voxels=tuple(d["median_image_size_in_voxels"]) if d.get("median_image_size_in_voxels") else None,
            normalization_schemes=tuple(field("normalization_schemes", (list, tuple))),
            use_mask_for_norm=tuple(bool(x) for x in field("use_mask_for_norm", (list, tuple))),
            resampling_fn_data=field("resampling_fn_data", str),
            resampling_fn_seg=field("resampling_fn_seg", str),
            resampling_fn_probabilities=field("resampling_fn_probabilities", str),
            resampling_fn_data_kwargs=_frozen(dict(field("resampling_fn_data_kwargs", dict))),
            resampling_fn_seg_kwargs=_frozen(dict(field("resampling_fn_seg_kwargs", dict))),
            resampling_fn_probabilities_kwargs=_frozen(dict(field("resampling_fn_probabilities_kwargs", dict))),
            architecture=Architecture.from_dict(field("architecture", dict), where),
            batch_dice=bool(field("batch_dice", bool, False, required=False)),
            previous_stage=field("previous_stage", str, None, required=False),
            next_stage=tuple([nxt] if isinstance(nxt, str) else nxt),
            inherits_from=field("inherits_from", str, None, required=False),
            resolved=_frozen(d),
        )

    @property
    def dim(self) -> int:
        return len(self.patch_size)

    def to_dict(self) -> dict[str, Any]:
        """The resolved entry as a plain dict (what the stages that still take dicts read)."""
        return _plain(self.resolved)


@dataclass(frozen=True)
class Plans:
    """A whole plans file. ``configurations`` are resolved; ``entries`` are the file's own."""

    source: str
    dataset_name: str
    plans_name: str
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    image_reader_writer: str
    original_median_spacing_after_transp: tuple[float, ...] | None
    original_median_shape_after_transp: tuple[float, ...] | None
    experiment_planner_used: str | None
    label_manager: str | None
    foreground_intensity_properties_per_channel: Mapping[str, Any]
    configurations: Mapping[str, Configuration]
    entries: Mapping[str, Any]  # configuration entries as written (inherits_from unresolved)
    other: Mapping[str, Any]  # every other top-level key (e.g. "oxunet"), kept for writing back
    key_order: tuple[str, ...]

    @classmethod
    def from_dict(cls, d: dict, source: str = "plans") -> "Plans":
        validate_plans(d, source)
        fg = d.get("foreground_intensity_properties_per_channel", d.get("foreground_intensity_properties_by_modality"))
        configs = {}
        for name in d["configurations"]:
            where = f"{source}: configurations.{name}"
            configs[name] = Configuration.from_resolved(name, resolve_configuration(d, name, source), where)
        known = set(_TOP_FIELDS) | {"configurations"}
        return cls(
            source=source, dataset_name=d["dataset_name"], plans_name=d["plans_name"],
            transpose_forward=tuple(d["transpose_forward"]), transpose_backward=tuple(d["transpose_backward"]),
            image_reader_writer=d["image_reader_writer"],
            original_median_spacing_after_transp=_frozen(d.get("original_median_spacing_after_transp")),
            original_median_shape_after_transp=_frozen(d.get("original_median_shape_after_transp")),
            experiment_planner_used=d.get("experiment_planner_used"), label_manager=d.get("label_manager"),
            foreground_intensity_properties_per_channel=_frozen(fg),
            configurations=MappingProxyType(configs), entries=_frozen(d["configurations"]),
            other=_frozen({k: v for k, v in d.items() if k not in known}), key_order=tuple(d),
        )

    @classmethod
    def load(cls, path: str | Path) -> "Plans":
        path = Path(path)
        if not path.is_file():
            raise PlansError(f"{path}: plans file not found (run `oxunet plan -d <dataset>` first)")
        try:
            d = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PlansError(f"{path}: cannot be read as JSON ({e})") from None
        return cls.from_dict(d, str(path))

    def configuration(self, name: str) -> Configuration:
        try:
            return self.configurations[name]
        except KeyError:
            raise PlansError(f"{self.source}: configuration {name!r} does not exist "
                             f"(available: {', '.join(self.configurations)})") from None

    def to_dict(self) -> dict[str, Any]:
        """The plans document as read (same keys, values and order)."""
        values = {"dataset_name": self.dataset_name, "plans_name": self.plans_name,
                  "transpose_forward": list(self.transpose_forward), "transpose_backward": list(self.transpose_backward),
                  "image_reader_writer": self.image_reader_writer,
                  "original_median_spacing_after_transp": _plain(self.original_median_spacing_after_transp),
                  "original_median_shape_after_transp": _plain(self.original_median_shape_after_transp),
                  "experiment_planner_used": self.experiment_planner_used, "label_manager": self.label_manager,
                  "configurations": _plain(self.entries), **_plain(self.other)}
        fg = _plain(self.foreground_intensity_properties_per_channel)
        if "foreground_intensity_properties_by_modality" in self.key_order:
            values["foreground_intensity_properties_by_modality"] = fg
        else:
            values["foreground_intensity_properties_per_channel"] = fg
        return {k: copy.deepcopy(values[k]) for k in self.key_order}

    def to_json(self) -> str:
        """nnU-Net's formatting (indent 4, as its save_json)."""
        return json.dumps(self.to_dict(), indent=JSON_INDENT)

    @property
    def raw(self) -> dict[str, Any]:
        """The plain dict (for stages that still take one)."""
        return self.to_dict()


def as_plans(plans: "Plans | dict", source: str = "plans") -> Plans:
    """A :class:`Plans` from either form (a dict is parsed and validated once here)."""
    return plans if isinstance(plans, Plans) else Plans.from_dict(plans, source)
