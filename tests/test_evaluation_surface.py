"""HD95 / ASSD / NSD against MONAI on random volumes with anisotropic spacing, and the empty-mask rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evalpost_helpers import blob
from oxunet.evaluation import surface_metrics
from peers import require


def _monai(ref, pred, spacing, tol):
    require("monai")
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    y = torch.from_numpy(np.stack([~ref, ref])[None].astype(np.float32))
    p = torch.from_numpy(np.stack([~pred, pred])[None].astype(np.float32))
    hd = compute_hausdorff_distance(p, y, include_background=False, percentile=95, spacing=list(spacing))
    asd = compute_average_surface_distance(p, y, include_background=False, symmetric=True, spacing=list(spacing))
    nsd = compute_surface_dice(p, y, class_thresholds=[tol], include_background=False, spacing=list(spacing))
    return float(hd[0, 0]), float(asd[0, 0]), float(nsd[0, 0])


@pytest.mark.parametrize("seed", range(4))
def test_surface_metrics_match_monai_3d(seed):
    rng = np.random.default_rng(seed)
    shape = (14, 30, 26)
    spacing = (rng.uniform(2, 5), rng.uniform(0.5, 1.2), rng.uniform(0.6, 1.5))
    ref = blob(shape, rng, 2, (2, 7))
    pred = blob(shape, rng, 2, (2, 7)) | np.roll(ref, 1, axis=2)
    if seed == 3:  # an object touching the image border
        ref[:, :, :3] = True
    ours = surface_metrics(ref, pred, spacing, nsd_tolerance_mm=1.5)
    hd, asd, nsd = _monai(ref, pred, spacing, 1.5)
    assert ours["HD95"] == pytest.approx(hd, rel=1e-5)
    assert ours["ASSD"] == pytest.approx(asd, rel=1e-5)
    assert ours["NSD"] == pytest.approx(nsd, rel=1e-5)


def test_surface_metrics_match_monai_2d():
    rng = np.random.default_rng(7)
    ref, pred = blob((40, 33), rng, 3, (3, 9)), blob((40, 33), rng, 3, (3, 9))
    ours = surface_metrics(ref, pred, (0.7, 1.3), nsd_tolerance_mm=2.0)
    hd, asd, nsd = _monai(ref, pred, (0.7, 1.3), 2.0)
    assert (ours["HD95"], ours["ASSD"], ours["NSD"]) == pytest.approx((hd, asd, nsd), rel=1e-5)


def test_empty_mask_rules():
    empty = np.zeros((5, 6, 7), bool)
    one = empty.copy()
    one[2, 3, 4] = True
    both = surface_metrics(empty, empty, (1, 1, 1))
    assert all(math.isnan(v) for v in both.values())
    for a, b in ((empty, one), (one, empty)):
        m = surface_metrics(a, b, (1, 1, 1))
        assert math.isinf(m["HD95"]) and math.isinf(m["ASSD"]) and m["NSD"] == 0.0
    same = surface_metrics(one, one, (2, 1, 1))
    assert same == {"HD95": 0.0, "ASSD": 0.0, "NSD": 1.0}


def test_distances_use_the_spacing():
    ref = np.zeros((10, 10, 10), bool)
    pred = np.zeros_like(ref)
    ref[2, 5, 5] = True
    pred[5, 5, 5] = True  # 3 voxels apart along axis 0
    m = surface_metrics(ref, pred, (2.5, 1.0, 1.0), nsd_tolerance_mm=7.0)
    assert m["HD95"] == pytest.approx(7.5) and m["ASSD"] == pytest.approx(7.5) and m["NSD"] == 0.0
