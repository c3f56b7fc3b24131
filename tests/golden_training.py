"""The training golden run: a tiny synthetic dataset trained on CPU in fp32 with a fixed seed.

``python3 tests/golden_training.py`` rewrites ``tests/data/training_golden.json``; the test
(tests/test_training_golden.py) reruns it and compares. One iteration per epoch, so each epoch's
logged train loss is one iteration's loss.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "data" / "training_golden.json"
NAME = "Dataset901_Golden"
EPOCHS, SEED = 4, 1234


def prepare(root: Path):
    from oxunet.dataset import resolve_paths
    from oxunet.planning import plan_experiment
    from oxunet.preprocessing.run import preprocess_dataset
    from synthetic import make_dataset

    make_dataset(root / "raw" / NAME, shapes=[(20, 24, 22)] * 5, spacings=[(1, 1, 1)] * 5, seed=3)
    paths = resolve_paths(raw_dir=root / "raw", preprocessed_dir=root / "pre", results_dir=root / "res", environ={})
    plans = plan_experiment("901", paths, quiet=True, num_processes=1)
    c = plans["configurations"]["3d_fullres"]
    c["patch_size"], c["batch_size"] = [16, 16, 16], 2
    c["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 8, 8]
    (root / "pre" / NAME / "nnUNetPlans.json").write_text(json.dumps(plans, indent=1))
    preprocess_dataset("901", paths, configurations=["3d_fullres"], num_processes=[1], quiet=True)
    return paths


def weights_digest(weights: dict) -> dict:
    """sha256 over every tensor (sorted keys, raw fp32 bytes) plus a per-tensor float64 sum."""
    h = hashlib.sha256()
    sums = {}
    for k in sorted(weights):
        a = weights[k].detach().cpu().contiguous().numpy()
        h.update(k.encode())
        h.update(a.tobytes())
        sums[k] = float(a.astype(np.float64).sum())
    return {"sha256": h.hexdigest(), "sums": sums}


def run(root: Path) -> dict:
    """Trains the golden run under ``root`` with one torch thread; returns what the fixture holds."""
    from oxunet.networks import load_nnunet_checkpoint
    from oxunet.training.config import TrainerConfig
    from oxunet.training.trainer import Trainer

    paths = prepare(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # summation order of CPU kernels depends on the thread count
    try:
        cfg = TrainerConfig(name="golden", epochs=EPOCHS, iterations_per_epoch=1, val_iterations=1, num_workers=0,
                            precision="fp32", seed=SEED, progress_plot=False)
        fold = Trainer("901", "3d_fullres", 0, paths=paths, config=cfg, quiet=True, device="cpu").run(validate=False)
    finally:
        torch.set_num_threads(threads)
    ck = load_nnunet_checkpoint(fold / "checkpoint_final.pth")
    log = ck["logging"]
    return {"train_losses": [float(x) for x in log["train_losses"]], "val_losses": [float(x) for x in log["val_losses"]],
            "lrs": [float(x) for x in log["lrs"]], "weights": weights_digest(ck["network_weights"]),
            "torch_version": torch.__version__}


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(HERE))
    with tempfile.TemporaryDirectory() as d:
        result = run(Path(d))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "weights"}, indent=1), result["weights"]["sha256"])
