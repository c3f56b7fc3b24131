"""Uncertainty maps for ``--save-uncertainty``: predictive entropy and member disagreement.

* **Entropy** of the probabilities the segmentation is the argmax of (softmax of the fold- and
  TTA-averaged logits, as nnU-Net ensembles), normalised by ``log(heads)`` to ``[0, 1]``: 0 where
  one class has probability 1, 1 where all classes are equally likely. Regions (sigmoid heads):
  the mean binary entropy of the regions, normalised by ``log 2``. Computed in the export, on the
  resampled logits a few channels at a time (an online log-sum-exp), so it streams with the
  label path and never needs every channel at once.
* **Disagreement** across the ensemble's members (each fold × each mirroring): per voxel the
  variance across members of each class's probability, summed over classes,
  ``sum_c Var_m p_mc``. 0 where all members give the same probabilities; largest where confident
  members split evenly (0.5 for two one-hot halves). Computed per window from the members' outputs,
  then Gaussian-averaged over windows like the logits (one extra channel in network space), and
  resampled to the input like the probabilities.

Per case, :func:`summarize` gives what a reviewer sorts by (``prediction_report.json``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["RunningEntropy", "UNCERTAIN_ENTROPY", "entropy_from_probabilities", "member_disagreement", "summarize",
           "write_uncertainty_maps"]

UNCERTAIN_ENTROPY = 0.5  # normalised entropy above which a voxel counts as uncertain in the summaries


def member_disagreement(members, has_regions: bool):
    """``sum_c Var_m p_mc`` of member logits ``(M, heads, *spatial)`` (torch) → ``(*spatial)`` float32."""
    import torch

    logits = members.float()
    probs = torch.sigmoid(logits) if has_regions else torch.softmax(logits, 1)
    return probs.var(0, unbiased=False).sum(0)


class RunningEntropy:
    """Normalised entropy of ``softmax(logits)`` fed a few channels at a time (``feed(first, chunk)``,
    float32 chunks ``(k, *shape)``), written into `out` (float32 ``shape``) by :meth:`finish`."""

    def __init__(self, shape, num_heads: int, has_regions: bool, out: np.ndarray | None = None):
        self.num_heads, self.has_regions = int(num_heads), has_regions
        self.out = np.zeros(shape, np.float32) if out is None else out
        # running max, sum exp(l - m), sum exp(l - m) * l (regions: only s, the summed entropy)
        self.m: torch.Tensor | None = None
        self.s: torch.Tensor | None = None
        self.t: torch.Tensor | None = None

    def feed(self, first: int, chunk: np.ndarray) -> None:
        import torch

        c = torch.from_numpy(np.asarray(chunk, dtype=np.float32))
        if self.has_regions:  # binary entropy per region, averaged
            p = torch.sigmoid(c)  # -log p = softplus(-l), -log(1-p) = softplus(l): finite at saturation
            f = torch.nn.functional.softplus
            h = (p * f(-c) + (1 - p) * f(c)).sum(0) / math.log(2)
            if self.s is None:
                self.s = torch.zeros(c.shape[1:])
            self.s += h
            return
        m_chunk = c.amax(0)
        s, t = self.s, self.t  # the same tensors: updated in place
        if self.m is None or s is None or t is None:  # the first chunk (m, s and t are set together)
            self.m = m_chunk.clone()
            s = self.s = torch.zeros_like(m_chunk)
            t = self.t = torch.zeros_like(m_chunk)
        else:
            new_m = torch.maximum(self.m, m_chunk)
            scale = torch.exp(self.m - new_m)
            s *= scale
            t *= scale
            self.m = new_m
        e = torch.exp(c - self.m)
        s += e.sum(0)
        t += (e * c).sum(0)

    def finish(self) -> np.ndarray:
        import torch

        if self.s is None:
            return self.out
        if self.has_regions:
            h = self.s / self.num_heads
        else:  # H = log Z - sum_c p_c l_c with Z = exp(m) * s
            assert self.m is not None and self.t is not None  # set with s by feed
            h = (self.m + self.s.log() - self.t / self.s) / math.log(max(self.num_heads, 2))
        torch.from_numpy(self.out).copy_(h.clamp_(0, 1))
        return self.out


def entropy_from_probabilities(probs: np.ndarray, has_regions: bool) -> np.ndarray:
    """Normalised entropy of probabilities ``(heads, *shape)`` (the probabilities path)."""
    import torch

    p = torch.from_numpy(np.asarray(probs, dtype=np.float32))
    entr = torch.special.entr  # -p log p, 0 at p = 0
    if has_regions:
        h = (entr(p) + entr(1 - p)).mean(0) / math.log(2)
    else:
        h = entr(p).sum(0) / math.log(max(p.shape[0], 2))
    return h.clamp_(0, 1).numpy()


def summarize(entropy: np.ndarray, disagreement: np.ndarray | None, seg: np.ndarray,
              threshold: float = UNCERTAIN_ENTROPY) -> dict:
    """Per-case numbers to sort cases for review."""
    fg = seg > 0
    n_fg = int(fg.sum())
    uncertain = entropy > threshold
    out = {"mean_entropy": float(entropy.mean()),
           "mean_entropy_foreground": float(entropy[fg].mean()) if n_fg else None,
           "uncertain_threshold": threshold,
           "uncertain_fraction": float(uncertain.mean()),
           "uncertain_fraction_of_foreground": float(uncertain[fg].mean()) if n_fg else None,
           "foreground_voxels": n_fg}
    if disagreement is not None:
        out["mean_disagreement_foreground"] = float(disagreement[fg].mean()) if n_fg else None
        out["max_disagreement"] = float(disagreement.max())
    return out


def write_uncertainty_maps(stem: Path, maps: dict, properties: dict, file_ending: str) -> list[Path]:
    """``{stem}_{name}{file_ending}`` (float32, the input's geometry) for SimpleITK-written endings;
    otherwise one ``{stem}_uncertainty.npz`` holding every map."""
    from ..io import atomic_path

    written = []
    stuff = properties.get("sitk_stuff")
    if stuff and file_ending in (".nii.gz", ".nii", ".nrrd", ".mha"):
        import SimpleITK as sitk

        for name, arr in maps.items():
            a = arr[0] if len(stuff["spacing"]) == 2 else arr
            img = sitk.GetImageFromArray(np.ascontiguousarray(a, dtype=np.float32))
            img.SetSpacing(tuple(stuff["spacing"]))
            img.SetOrigin(tuple(stuff["origin"]))
            img.SetDirection(tuple(stuff["direction"]))
            path = stem.with_name(f"{stem.name}_{name}{file_ending}")
            with atomic_path(path) as tmp:
                sitk.WriteImage(img, str(tmp), True)
            written.append(path)
        return written
    path = stem.with_name(f"{stem.name}_uncertainty.npz")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            arrays: dict[str, Any] = {k: np.asarray(v, np.float32) for k, v in maps.items()}
            np.savez_compressed(f, **arrays)
    return [path]
