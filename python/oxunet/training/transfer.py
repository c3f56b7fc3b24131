"""Transfer learning: ``--pretrained CHECKPOINT`` (ours or nnU-Net's) and ``--freeze encoder|N``.

Loading (intended deviation: nnU-Net refuses any mismatch outside the seg layers; we load what fits
and report the rest):

* every tensor whose name and shape match is copied (DDP ``module.`` / ``_orig_mod.`` prefixes stripped);
* seg layers (``.seg_layers.``) whose shape differs — the label count changed — keep this network's
  fresh He initialisation;
* the first convolution, when only its input-channel count differs, is adapted: each new input
  filter is the mean of the pretrained input filters × ``in_old / in_new``. So an input whose
  channels all carry the same image gives exactly the pretrained first-layer response to that image;
* anything else that is missing or has another shape keeps its fresh initialisation and is reported
  (name, our shape, the checkpoint's shape). Loading nothing at all is an error.

Freezing: ``encoder`` freezes every encoder stage (and the ResEnc stem); ``N`` the first N encoder
stages (highest resolution first; the stem goes with stage 0). Frozen parameters get
``requires_grad = False`` and stay out of the optimizer. Frozen modules are kept in eval mode
during training (:func:`set_frozen_eval`) so BatchNorm statistics and dropout in them are fixed too;
for nnU-Net's InstanceNorm this changes nothing (no running statistics).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from ..errors import TrainingError

REPORT_VERSION = 1


class TransferError(TrainingError, ValueError):
    """Pretrained weights that cannot be used at all, or a bad ``--freeze`` value."""


@dataclass
class TransferReport:
    """What :func:`load_pretrained_weights` did, tensor by tensor (JSON-ready via :meth:`to_dict`)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[dict[str, Any]] = field(default_factory=list)  # first conv: name, ours, pretrained, rule
    reinitialised: list[dict[str, Any]] = field(default_factory=list)  # name, ours, pretrained (None: missing), reason
    unused: list[dict[str, Any]] = field(default_factory=list)  # checkpoint tensors with no counterpart here

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["loaded"] = len(self.loaded)
        return {"version": REPORT_VERSION, **d}

    def lines(self) -> list[str]:
        out = [f"pretrained {self.source}: {len(self.loaded)} tensor(s) loaded, {len(self.adapted)} adapted, "
               f"{len(self.reinitialised)} re-initialised, {len(self.unused)} unused"]
        for a in self.adapted:
            out.append(f"  adapted {a['name']}: {a['pretrained']} -> {a['ours']} ({a['rule']})")
        for r in self.reinitialised:
            out.append(f"  re-initialised {r['name']}: ours {r['ours']}, checkpoint {r['pretrained']} ({r['reason']})")
        for u in self.unused:
            out.append(f"  unused {u['name']} {u['pretrained']}")
        return out

    def rich_table(self):
        from rich.table import Table

        t = Table(title=f"pretrained weights: {len(self.loaded)} loaded", show_lines=False)
        for col in ("tensor", "ours", "checkpoint", "action"):
            t.add_column(col)
        for a in self.adapted:
            t.add_row(a["name"], str(a["ours"]), str(a["pretrained"]), "adapted: " + a["rule"])
        for r in self.reinitialised:
            t.add_row(r["name"], str(r["ours"]), str(r["pretrained"]), "re-initialised: " + r["reason"])
        for u in self.unused:
            t.add_row(u["name"], "-", str(u["pretrained"]), "unused")
        return t


def _strip_prefixes(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from ..networks.checkpoint import network_state_dict

    return network_state_dict(weights)


def first_conv_keys(network: nn.Module) -> list[str]:
    """State-dict names of the first convolution's weight (it appears under several names: the
    decoder keeps a reference to the encoder, DNA blocks list it twice)."""
    first = next((m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))), None)
    if first is None:
        return []
    return [n for n, p in network.named_parameters(remove_duplicate=False) if p is first.weight]


def adapt_input_filters(weight: torch.Tensor, in_new: int) -> torch.Tensor:
    """Mean over the pretrained input filters, replicated ``in_new`` times, × ``in_old / in_new``."""
    in_old = weight.shape[1]
    return weight.mean(1, keepdim=True).expand(-1, in_new, *weight.shape[2:]).clone() * (in_old / in_new)


def load_pretrained_weights(network: nn.Module, weights: dict[str, torch.Tensor], source: str = "checkpoint") -> TransferReport:
    """Copy every fitting tensor of ``weights`` into ``network`` (rules in the module docstring)."""
    weights = _strip_prefixes(weights)
    own = network.state_dict()
    first = set(first_conv_keys(network))
    report = TransferReport(source=source)
    new_state = {}
    for name, mine in own.items():
        theirs = weights.get(name)
        if theirs is not None and tuple(theirs.shape) == tuple(mine.shape):
            new_state[name] = theirs.to(dtype=mine.dtype)
            report.loaded.append(name)
        elif (theirs is not None and name in first and theirs.ndim == mine.ndim
              and theirs.shape[0] == mine.shape[0] and theirs.shape[2:] == mine.shape[2:]):
            new_state[name] = adapt_input_filters(theirs.to(dtype=mine.dtype), mine.shape[1])
            report.adapted.append({"name": name, "ours": list(mine.shape), "pretrained": list(theirs.shape),
                                   "rule": f"mean of {theirs.shape[1]} input filter(s) x {theirs.shape[1]}/{mine.shape[1]}"})
        else:
            if theirs is None:
                reason = "not in checkpoint"
            elif ".seg_layers." in name:
                reason = "label count changed"
            else:
                reason = "shape differs"
            report.reinitialised.append({"name": name, "ours": list(mine.shape),
                                         "pretrained": list(theirs.shape) if theirs is not None else None,
                                         "reason": reason})
    for name, theirs in weights.items():
        if name not in own:
            report.unused.append({"name": name, "pretrained": list(theirs.shape)})
    if not report.loaded and not report.adapted:
        raise TransferError(f"{source}: no tensor of the checkpoint fits this network (different architecture?); "
                            f"first missing/different: {[r['name'] for r in report.reinitialised[:3]]}")
    own.update(new_state)
    network.load_state_dict(own)
    return report


def _encoder_stage_modules(network: nn.Module) -> list[nn.Module]:
    enc = getattr(network, "encoder", None)
    stages = getattr(enc, "stages", None)
    if stages is None:
        raise TransferError(f"--freeze: {type(network).__name__} has no encoder.stages")
    return list(stages)


def parse_freeze(value: str | int | None) -> str | int | None:
    """``None``, ``'encoder'`` or a positive stage count (also given as a string); see kinds.parse_freeze."""
    from .kinds import FreezeError
    from .kinds import parse_freeze as parse

    try:
        return parse(value)
    except FreezeError as e:
        raise TransferError(str(e)) from None


def frozen_modules(network: nn.Module, freeze: str | int | None) -> list[nn.Module]:
    """The modules ``freeze`` selects (see module docstring)."""
    freeze = parse_freeze(freeze)
    if freeze is None:
        return []
    stages = _encoder_stage_modules(network)
    n = len(stages) if freeze == "encoder" else int(freeze)  # parse_freeze: "encoder" or a stage count
    if n > len(stages):
        raise TransferError(f"--freeze {freeze}: the encoder has only {len(stages)} stages")
    mods = list(stages[:n])
    stem = getattr(network.encoder, "stem", None)
    if stem is not None:
        mods.insert(0, stem)
    return mods


def apply_freeze(network: nn.Module, freeze: str | int | None) -> list[str]:
    """Set ``requires_grad = False`` on the selected modules; returns the frozen parameter names."""
    mods = frozen_modules(network, freeze)
    ids = set()
    for m in mods:
        for p in m.parameters():
            p.requires_grad_(False)
            ids.add(id(p))
    return [n for n, p in network.named_parameters() if id(p) in ids]


def set_frozen_eval(network: nn.Module, freeze: str | int | None) -> None:
    """Call after ``network.train()``: frozen modules go back to eval mode."""
    for m in frozen_modules(network, freeze):
        m.eval()
