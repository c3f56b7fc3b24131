"""The network of a plans configuration as a picture (``oxunet plan --show-network --png FILE``).

One panel per configuration, drawn as a U: encoder stages down the left, the bottleneck at the
bottom, decoder stages up the right, skip connections across, and a deep-supervision head beside
every decoder stage (the top one is the network's output). Each box names its features, kernel,
stride and feature-map size for the configuration's patch; box width grows with log2(features).
Same rows as the text table (:func:`oxunet.networks.arch.describe_network`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

from .arch import describe_network, parse_architecture

_ENCODER, _DECODER, _HEAD = "#cfe2f3", "#d9ead3", "#fce5cd"


def _x(v: Sequence[int]) -> str:
    return "x".join(map(str, v))


def _box(ax, cx: float, cy: float, w: float, h: float, colour: str, text: str, fontsize: float) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((cx - w / 2, cy - h / 2), w, h, boxstyle="round,pad=0.02", fc=colour, ec="#444444", lw=1))
    ax.text(cx, cy, text, ha="center", va="center", fontsize=fontsize, family="monospace")


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], style: str = "-|>", colour: str = "#444444",
           ls: str = "-") -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle=style, color=colour, lw=1.2, ls=ls))


def draw_configuration(ax, name: str, architecture: Mapping[str, Any], patch_size: Sequence[int] | None) -> None:
    """One configuration's U on the matplotlib axes ``ax``."""
    spec = parse_architecture(architecture)
    rows = describe_network(spec, patch_size)
    n = len(rows)
    widest = max(math.log2(r.features) for r in rows)

    def width(features: int) -> float:
        return 0.55 + 0.9 * math.log2(features) / widest

    h, fs = 0.62, 7.5
    xe, xd, xh = 0.0, 3.4, 5.0  # encoder, decoder, head columns
    unit = "blocks" if spec.is_residual else "convs"
    for r in rows:
        y = -r.stage
        size = f"\n{_x(r.output_size)}" if r.output_size else ""
        label = f"{r.features} ch, k {_x(r.kernel)}\n/{_x(r.stride)}, {r.encoder_blocks} {unit}{size}"
        cx = xe if r.stage < n - 1 else (xe + xd) / 2
        _box(ax, cx, y, width(r.features), h, _ENCODER, label, fs)
        if r.stage > 0:  # down from the stage above
            _arrow(ax, (xe, y + 1 - h / 2), (cx, y + h / 2))
    for r in rows[:-1]:
        y = -r.stage
        size = f", {_x(r.output_size)}" if r.output_size else ""
        _box(ax, xd, y, width(r.features), h, _DECODER, f"{r.features} ch{size}\n{r.decoder_convs} convs", fs)
        _arrow(ax, (xe + width(r.features) / 2, y), (xd - width(r.features) / 2, y), colour="#3c78d8", ls="--")
        below_x = xd if r.stage + 1 < n - 1 else (xe + xd) / 2
        _arrow(ax, (below_x, y - 1 + h / 2), (xd, y - h / 2))
        head = "output" if r.stage == 0 else f"DS head {r.stage}"
        _box(ax, xh, y, 1.0, h * 0.7, _HEAD, head, fs)
        _arrow(ax, (xd + width(r.features) / 2, y), (xh - 0.5, y))
    patch = f", patch {_x(patch_size)}" if patch_size else ""
    ax.set_title(f"{name}: {spec.network_class} ({spec.dim}D){patch}", fontsize=10)
    ax.set_xlim(-1.2, 5.8)
    ax.set_ylim(-n + 0.4, 0.6)
    ax.axis("off")


def network_figure(plans: Mapping[str, Any], configurations: Sequence[str] | None = None, source: str = "plans"):
    """A matplotlib Figure with every configuration of ``plans`` that has an architecture (or those named)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..planning import resolve_configuration

    names = list(configurations or plans["configurations"])
    drawn = []
    for name in names:
        # it only reads plans (its annotation says dict until the planning branch widens it to Mapping)
        cfg = resolve_configuration(cast(dict, plans), name, source)
        if "architecture" in cfg:
            drawn.append((name, cfg["architecture"], cfg.get("patch_size")))
    if not drawn:
        raise ValueError(f"{source}: no configuration with an architecture to draw")
    depth = max(int(a["arch_kwargs"]["n_stages"]) for _, a, _ in drawn)
    # Figure + Agg canvas directly: no pyplot global state in the host process
    fig = Figure(figsize=(7.5 * len(drawn), 1.0 + 0.95 * depth), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(drawn), squeeze=False)[0]
    for ax, (name, arch, patch) in zip(axes, drawn):
        draw_configuration(ax, name, arch, patch)
    fig.tight_layout()
    return fig


def write_network_png(plans: Mapping[str, Any], path: str | Path, configurations: Sequence[str] | None = None,
                      source: str = "plans") -> Path:
    """Draws the networks of ``plans`` (see :func:`network_figure`) to ``path``."""
    fig = network_figure(plans, configurations, source)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
