"""Read a plans ``architecture`` entry into a validated spec, without importing torch.

nnU-Net plans store the network as ``{"network_class_name", "arch_kwargs", "_kw_requires_import"}``
(dynamic-network-architectures class names, torch class paths as strings). This module checks the
geometry (lengths, dimensionality) with errors that name the offending key, and describes the
resulting U-Net stage by stage for ``oxunet plan --show-network``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any, Mapping, Sequence

# Network classes we implement; plans name them with DNA's dotted path.
NETWORK_CLASSES = ("PlainConvUNet", "ResidualEncoderUNet")
_NETWORK_PREFIXES = ("dynamic_network_architectures.", "oxunet.networks.")

# Keys whose values are class names in nnU-Net plans (resolved with pydoc.locate there).
DEFAULT_IMPORT_KEYS = ("conv_op", "norm_op", "dropout_op", "nonlin")


class ArchitectureError(ValueError):
    """The plans' architecture entry cannot be turned into a network."""


def resolve_network_class_name(name: str) -> str:
    """Map a plans ``network_class_name`` (DNA dotted path or short name) to ours."""
    if not isinstance(name, str) or not name:
        raise ArchitectureError(f"network_class_name must be a non-empty string, got {name!r}")
    short = name.rsplit(".", 1)[-1]
    dotted_ok = "." not in name or name.startswith(_NETWORK_PREFIXES)
    if short in NETWORK_CLASSES and dotted_ok:
        return short
    raise ArchitectureError(
        f"unsupported network class {name!r}: oxunet implements "
        + ", ".join(f"dynamic_network_architectures.architectures.unet.{c}" for c in NETWORK_CLASSES)
    )


def is_oxunet_network(name: Any) -> bool:
    """Whether a ``network_class_name`` is one of our U-Nets (else the registry resolves it)."""
    try:
        resolve_network_class_name(name)
    except ArchitectureError:
        return not isinstance(name, str) or not name  # malformed names fail in parse_architecture
    return True


def op_short_name(op: Any) -> str | None:
    """Last component of a class given as dotted string or as a class object (None stays None)."""
    if op is None:
        return None
    if isinstance(op, str):
        return op.rsplit(".", 1)[-1]
    return getattr(op, "__name__", str(op))


def _dim_of_conv(conv_op: Any) -> int:
    short = op_short_name(conv_op)
    if short in ("Conv2d", "Conv3d"):
        return int(short[4])
    raise ArchitectureError(f"conv_op must be Conv2d or Conv3d (torch.nn), got {conv_op!r}")


def _per_stage_ints(kwargs: Mapping[str, Any], key: str, n: int, *, minimum: int = 1) -> tuple[int, ...]:
    value = kwargs[key]
    values = [value] * n if isinstance(value, int) else list(value)
    if len(values) != n:
        raise ArchitectureError(f"arch_kwargs[{key!r}] needs {n} entries, got {len(values)}: {value!r}")
    if any(not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in values):
        raise ArchitectureError(f"arch_kwargs[{key!r}] must hold integers >= {minimum}, got {value!r}")
    return tuple(values)


def _per_stage_vectors(kwargs: Mapping[str, Any], key: str, n: int, dim: int) -> tuple[tuple[int, ...], ...]:
    value = kwargs[key]
    stages = [value] * n if isinstance(value, int) else list(value)
    if len(stages) != n:
        raise ArchitectureError(f"arch_kwargs[{key!r}] needs {n} entries (one per stage), got {len(stages)}")
    out = []
    for s, v in enumerate(stages):
        vec = [v] * dim if isinstance(v, int) else list(v)
        if len(vec) != dim or any(not isinstance(i, int) or i < 1 for i in vec):
            raise ArchitectureError(
                f"arch_kwargs[{key!r}][{s}] must be {dim} positive integers (conv_op is {dim}D), got {v!r}"
            )
        out.append(tuple(vec))
    return tuple(out)


@dataclass(frozen=True)
class UNetSpec:
    """Validated U-Net description; ops stay as given (class-name strings or classes)."""

    network_class: str  # "PlainConvUNet" | "ResidualEncoderUNet"
    dim: int
    n_stages: int
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    blocks_per_stage: tuple[int, ...]  # convs (PlainConvUNet) or residual blocks (ResidualEncoderUNet)
    n_conv_per_stage_decoder: tuple[int, ...]
    conv_bias: bool
    conv_op: Any
    norm_op: Any
    norm_op_kwargs: dict
    dropout_op: Any
    dropout_op_kwargs: dict
    nonlin: Any
    nonlin_kwargs: dict
    extra: dict = field(default_factory=dict)  # nonlin_first / block / bottleneck_channels / stem_channels

    @property
    def is_residual(self) -> bool:
        return self.network_class == "ResidualEncoderUNet"

    def total_strides(self) -> tuple[int, ...]:
        """Product of all stage strides per axis: patch sizes must be divisible by it."""
        return tuple(prod(s[a] for s in self.strides) for a in range(self.dim))


_COMMON_KEYS = {
    "n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "n_conv_per_stage_decoder",
    "conv_bias", "norm_op", "norm_op_kwargs", "dropout_op", "dropout_op_kwargs", "nonlin", "nonlin_kwargs",
    "deep_supervision",
}
_EXTRA_KEYS = {
    "PlainConvUNet": {"n_conv_per_stage", "nonlin_first"},
    "ResidualEncoderUNet": {"n_blocks_per_stage", "block", "bottleneck_channels", "stem_channels"},
}


def parse_architecture(architecture: Mapping[str, Any]) -> UNetSpec:
    """Validate a plans ``architecture`` dict (``network_class_name`` + ``arch_kwargs``)."""
    if not isinstance(architecture, Mapping):
        raise ArchitectureError(f"architecture must be a dict, got {type(architecture).__name__}")
    for key in ("network_class_name", "arch_kwargs"):
        if key not in architecture:
            raise ArchitectureError(f"architecture entry has no {key!r} (keys: {sorted(architecture)})")
    cls = resolve_network_class_name(architecture["network_class_name"])
    kwargs = dict(architecture["arch_kwargs"])
    blocks_key = "n_conv_per_stage" if cls == "PlainConvUNet" else "n_blocks_per_stage"
    allowed = _COMMON_KEYS | _EXTRA_KEYS[cls]
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ArchitectureError(f"{cls}: unknown arch_kwargs {unknown} (accepted: {sorted(allowed)})")
    missing = [k for k in ("n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", blocks_key,
                           "n_conv_per_stage_decoder") if k not in kwargs]
    if missing:
        raise ArchitectureError(f"{cls}: arch_kwargs lacks {missing}")
    n = kwargs["n_stages"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ArchitectureError(f"arch_kwargs['n_stages'] must be an integer >= 2, got {n!r}")
    dim = _dim_of_conv(kwargs["conv_op"])
    extra = {k: kwargs[k] for k in _EXTRA_KEYS[cls] - {blocks_key} if k in kwargs}
    block = op_short_name(extra.get("block"))
    if block not in (None, "BasicBlockD", "BottleneckD"):
        raise ArchitectureError(f"ResidualEncoderUNet: block must be BasicBlockD or BottleneckD, got {extra['block']!r}")
    if block == "BottleneckD" and extra.get("bottleneck_channels") is None:
        raise ArchitectureError("ResidualEncoderUNet: block BottleneckD needs bottleneck_channels")
    return UNetSpec(
        network_class=cls,
        dim=dim,
        n_stages=n,
        features_per_stage=_per_stage_ints(kwargs, "features_per_stage", n),
        kernel_sizes=_per_stage_vectors(kwargs, "kernel_sizes", n, dim),
        strides=_per_stage_vectors(kwargs, "strides", n, dim),
        blocks_per_stage=_per_stage_ints(kwargs, blocks_key, n),
        n_conv_per_stage_decoder=_per_stage_ints(kwargs, "n_conv_per_stage_decoder", n - 1),
        conv_bias=bool(kwargs.get("conv_bias", False)),
        conv_op=kwargs["conv_op"],
        norm_op=kwargs.get("norm_op"),
        norm_op_kwargs=dict(kwargs.get("norm_op_kwargs") or {}),
        dropout_op=kwargs.get("dropout_op"),
        dropout_op_kwargs=dict(kwargs.get("dropout_op_kwargs") or {}),
        nonlin=kwargs.get("nonlin"),
        nonlin_kwargs=dict(kwargs.get("nonlin_kwargs") or {}),
        extra=extra,
    )


@dataclass(frozen=True)
class StageRow:
    """One line of the network table: an encoder stage and the decoder stage at its resolution."""

    stage: int
    features: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    encoder_blocks: int  # convs or residual blocks
    decoder_convs: int  # 0 for the bottleneck
    output_size: tuple[int, ...] | None  # feature-map size for the given patch


def check_patch_size(spec: UNetSpec, patch_size: Sequence[int]) -> None:
    """Raise unless every axis of the patch is divisible by the network's total stride."""
    if len(patch_size) != spec.dim:
        raise ArchitectureError(f"patch size {tuple(patch_size)} has {len(patch_size)} axes, the network is {spec.dim}D")
    total = spec.total_strides()
    bad = [a for a in range(spec.dim) if patch_size[a] % total[a]]
    if bad:
        raise ArchitectureError(
            f"patch size {tuple(patch_size)} is not divisible by the network's total stride {total} "
            f"on axes {bad}: the decoder could not concatenate its skips"
        )


def describe_network(architecture: Mapping[str, Any] | UNetSpec, patch_size: Sequence[int] | None = None) -> list[StageRow]:
    """Stage table (features, kernel, stride, blocks, output size for ``patch_size``) of a plans architecture."""
    spec = architecture if isinstance(architecture, UNetSpec) else parse_architecture(architecture)
    if patch_size is not None:
        check_patch_size(spec, patch_size)
        size: list[int] | None = [int(p) for p in patch_size]
    else:
        size = None
    rows = []
    for s in range(spec.n_stages):
        if size is not None:
            size = [p // st for p, st in zip(size, spec.strides[s])]
        rows.append(StageRow(
            stage=s,
            features=spec.features_per_stage[s],
            kernel=spec.kernel_sizes[s],
            stride=spec.strides[s],
            encoder_blocks=spec.blocks_per_stage[s],
            decoder_convs=spec.n_conv_per_stage_decoder[spec.n_stages - 2 - s] if s < spec.n_stages - 1 else 0,
            output_size=tuple(size) if size is not None else None,
        ))
    return rows


def format_network_table(architecture: Mapping[str, Any] | UNetSpec, patch_size: Sequence[int] | None = None) -> str:
    """Plain-text rendering of :func:`describe_network` (one line per stage)."""
    spec = architecture if isinstance(architecture, UNetSpec) else parse_architecture(architecture)
    rows = describe_network(spec, patch_size)
    unit = "blocks" if spec.is_residual else "convs"
    head = ["stage", "features", "kernel", "stride", f"enc {unit}", "dec convs", "size"]
    body = [
        [str(r.stage), str(r.features), "x".join(map(str, r.kernel)), "x".join(map(str, r.stride)),
         str(r.encoder_blocks), str(r.decoder_convs) if r.decoder_convs else "-",
         "x".join(map(str, r.output_size)) if r.output_size else "-"]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = [f"{spec.network_class} ({spec.dim}D)"]
    lines += ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in [head, *body]]
    return "\n".join(lines)
