"""Golden numerics of training (issue 11): the rebuild of the trainer must not move a bit.

tests/data/training_golden.json was recorded on the trainer before the rebuild (CPU, fp32, seed
1234, one torch thread; `python3 tests/golden_training.py` rewrites it). Same torch version: losses
and the sha256 of the weights must be identical; another torch may reorder float sums, so there the
values are compared to 1e-5.
"""

from __future__ import annotations

import json

import pytest
import torch

import golden_training


def test_golden_losses_and_weights(tmp_path):
    golden = json.loads(golden_training.GOLDEN.read_text())
    got = golden_training.run(tmp_path)
    assert len(got["train_losses"]) == golden_training.EPOCHS == 4
    assert got["lrs"] == pytest.approx(golden["lrs"], rel=1e-12)
    if got["torch_version"] == golden["torch_version"]:
        assert got["train_losses"] == golden["train_losses"]
        assert got["val_losses"] == golden["val_losses"]
        assert got["weights"]["sha256"] == golden["weights"]["sha256"]
    else:
        assert got["train_losses"] == pytest.approx(golden["train_losses"], rel=1e-5)
        assert got["val_losses"] == pytest.approx(golden["val_losses"], rel=1e-5)
        for k, v in golden["weights"]["sums"].items():
            assert got["weights"]["sums"][k] == pytest.approx(v, rel=1e-4, abs=1e-5), k
    assert set(got["weights"]["sums"]) == set(golden["weights"]["sums"])
    assert torch.get_num_threads() >= 1  # the run restored the thread count
