"""Trained-model folders with random-but-fixed weights, for prediction tests and benches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch


def shrink_configuration(plans: dict, configuration: str, patch, features) -> dict:
    """Sets a small patch and feature counts (stage count kept) on a plans configuration."""
    c = plans["configurations"][configuration]
    c["patch_size"] = list(patch)
    n = c["architecture"]["arch_kwargs"]["n_stages"]
    c["architecture"]["arch_kwargs"]["features_per_stage"] = list(features)[:n] + [features[-1]] * (n - len(features))
    return plans


def random_network(plans: dict, configuration: str, num_in: int, num_out: int, seed: int, *, nnunet: bool,
                   last_layer_scale: float = 30.0):
    """A network of the plans' architecture with seeded weights, from nnunetv2's own classes
    (dynamic_network_architectures) or from ours; the segmentation layers are scaled so that the
    logits differ clearly between classes (random weights alone give near-uniform outputs)."""
    from oxunet.planning.plans import resolve_configuration

    arch = resolve_configuration(plans, configuration)["architecture"]
    torch.manual_seed(seed)
    if nnunet:
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

        net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     num_in, num_out, allow_init=True, deep_supervision=False)
    else:
        from oxunet.networks import build_network

        net = build_network(arch, num_in, num_out, deep_supervision=False)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".seg_layers." in name:
                p.mul_(last_layer_scale)
            elif "norm" in name and name.endswith(".bias"):
                p.normal_(0, 0.3)  # break the symmetry the default init (bias 0) leaves
    return net.eval()


def write_model_folder(model_dir: Path, plans: dict, dataset_json: dict, configuration: str, folds=(0,), *,
                       nnunet: bool = True, seed: int = 0, mirror_axes=(0, 1, 2), trainer_name: str = "nnUNetTrainer",
                       checkpoint: str = "checkpoint_final.pth") -> Path:
    """``model_dir/{plans.json, dataset.json, fold_N/checkpoint}`` with nnU-Net's checkpoint keys."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "plans.json").write_text(json.dumps(plans, indent=1))
    (model_dir / "dataset.json").write_text(json.dumps(dataset_json, indent=1))
    labels = {k: v for k, v in dataset_json["labels"].items() if k != "ignore"}
    regions = any(isinstance(v, list) and len(v) > 1 for v in labels.values())
    num_out = len(labels) - (1 if regions else 0) if regions else len(labels)
    num_in = len(dataset_json["channel_names"])
    prev = plans["configurations"][configuration].get("previous_stage")  # set on the cascade entry itself
    if prev:
        num_in += len([v for v in labels.values() if v != 0])
    for i, f in enumerate(folds):
        net = random_network(plans, configuration, num_in, num_out, seed + i, nnunet=nnunet)
        fold_dir = model_dir / f"fold_{f}"
        fold_dir.mkdir(exist_ok=True)
        torch.save({
            "network_weights": net.state_dict(),
            "optimizer_state": {},
            "grad_scaler_state": None,
            "logging": {},
            "_best_ema": None,
            "current_epoch": 1,
            "init_args": {"plans": plans, "configuration": configuration, "fold": f, "dataset_json": dataset_json},
            "trainer_name": trainer_name,
            "inference_allowed_mirroring_axes": tuple(mirror_axes) if mirror_axes is not None else None,
        }, fold_dir / checkpoint)
    return model_dir


def tiny_project(root: Path) -> dict:
    """A tiny planned dataset (patch 16³ / 16², 3 stages, 4–8 features) plus one test case at another
    spacing: ``{"plans", "dataset_json", "paths", "raw", "test_images"}``."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from synthetic import make_dataset

    from oxunet.dataset import resolve_paths

    name = "Dataset901_Pred"
    make_dataset(root / "raw" / name, shapes=[(20, 24, 22)] * 4, spacings=[(1, 1, 1)] * 4, labels=3)
    paths = resolve_paths(raw_dir=root / "raw", preprocessed_dir=root / "pre", results_dir=root / "res", environ={})
    # oxunet's plans for exactly this dataset, frozen (the fingerprint alone takes ~10 s on 2 busy cores)
    plans = json.loads((Path(__file__).parent / "inference_tiny_plans.json").read_text())
    (root / "pre" / name).mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "raw" / name / "dataset.json", root / "pre" / name / "dataset.json")
    shrink_configuration(plans, "3d_fullres", [16, 16, 16], [4, 8, 8])
    shrink_configuration(plans, "2d", [16, 16], [4, 8, 8])
    (root / "pre" / name / "nnUNetPlans.json").write_text(json.dumps(plans, indent=1))
    test = make_dataset(root / "test", shapes=[(14, 26, 22)], spacings=[(1.3, 0.9, 1.1)], labels=3, seed=5)
    dataset_json = json.loads((root / "raw" / name / "dataset.json").read_text())
    return {"plans": plans, "dataset_json": dataset_json, "paths": paths, "raw": root / "raw" / name,
            "test_images": test / "imagesTr", "name": name}
