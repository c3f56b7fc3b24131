"""nnU-Net 2.8.1's trainer classes as data: each name maps to the TrainerConfig fields it changes.

Every class nnunetv2 ships under ``training/nnUNetTrainer/variants/`` (plus ``nnUNet_Trainer_BS8``
from ``primus/``) is either here (:data:`VARIANTS`) or in :data:`UNSUPPORTED` with the reason.
Plain dicts, no imports: ``oxunet.training.config`` turns them into configs.
"""

from __future__ import annotations

from typing import Any
from ..constants import OVERSAMPLE_FOREGROUND_PERCENT

_EPOCHS = (5, 10, 20, 50, 100, 250, 500, 750, 2000, 4000, 8000)
# nnUNetTrainer_onlyMirror01: spatial axes 0 and 1 in 3D, axis 0 in 2D (keyed by patch dimensionality)
_ONLY_MIRROR_01 = {"mirror_axes": {"2": [0], "3": [0, 1]}}
_NO_MIRRORING = {"mirror_axes": None}
_DA5 = {"augmentation": "da5"}
_SEG_ORD0 = {"seg_interpolation_order": 0}


def _table() -> dict[str, dict[str, Any]]:
    v: dict[str, dict[str, Any]] = {"nnUNetTrainer": {}}
    # training_length
    v["nnUNetTrainer_1epoch"] = {"epochs": 1}
    v["nnUNetTrainer_1epochs"] = {"epochs": 1}  # oxunet's earlier spelling, kept for existing results folders
    for e in _EPOCHS:
        v[f"nnUNetTrainer_{e}epochs"] = {"epochs": e}
    for e in (250, 2000, 4000, 8000):
        v[f"nnUNetTrainer_{e}epochs_NoMirroring"] = {"epochs": e, **_NO_MIRRORING}
    # data_augmentation
    v["nnUNetTrainerNoDA"] = {"augmentation": "none"}
    v["nnUNetTrainerNoMirroring"] = dict(_NO_MIRRORING)
    v["nnUNetTrainer_onlyMirror01"] = dict(_ONLY_MIRROR_01)
    v["nnUNetTrainer_onlyMirror01_1500ep"] = {**_ONLY_MIRROR_01, "epochs": 1500}
    v["nnUNetTrainer_onlyMirror01_DASegOrd0"] = {**_ONLY_MIRROR_01, **_SEG_ORD0}
    v["nnUNetTrainer_onlyMirror01_DA5"] = {**_ONLY_MIRROR_01, **_DA5}  # competitions/aortaseg24
    v["nnUNetTrainer_DASegOrd0"] = dict(_SEG_ORD0)
    v["nnUNetTrainer_DASegOrd0_NoMirroring"] = {**_SEG_ORD0, **_NO_MIRRORING}
    v["nnUNetTrainer_noDummy2DDA"] = {"dummy_2d": False}
    v["nnUNetTrainerDA5"] = dict(_DA5)
    v["nnUNetTrainerDA5_10epochs"] = {**_DA5, "epochs": 10}
    v["nnUNetTrainerDA5ord0"] = {**_DA5, **_SEG_ORD0, "image_interpolation_order": 0}
    v["nnUNetTrainerDA5Segord0"] = {**_DA5, **_SEG_ORD0}
    # loss
    v["nnUNetTrainerCELoss"] = {"loss": "ce"}
    v["nnUNetTrainerCELoss_5epochs"] = {"loss": "ce", "epochs": 5}
    v["nnUNetTrainerDiceLoss"] = {"loss": "dice"}
    v["nnUNetTrainerDiceCELoss_noSmooth"] = {"loss_smooth": 0.0}
    v["nnUNetTrainerTopk10Loss"] = {"loss": "topk", "topk_percent": 10.0}
    v["nnUNetTrainerTopk10LossLS01"] = {"loss": "topk", "topk_percent": 10.0, "label_smoothing": 0.1}
    v["nnUNetTrainerDiceTopK10Loss"] = {"loss": "dice_topk", "topk_percent": 10.0}
    # lr_schedule
    v["nnUNetTrainerCosAnneal"] = {"lr_schedule": "cosine"}
    v["nnUNetTrainer_warmup"] = {"lr_schedule": "warmup_poly", "warmup_epochs": 50}
    # optimizer
    v["nnUNetTrainerAdam"] = {"optimizer": "adam"}
    v["nnUNetTrainerAdam1en3"] = {"optimizer": "adam", "initial_lr": 1e-3}
    v["nnUNetTrainerAdam3en4"] = {"optimizer": "adam", "initial_lr": 3e-4}
    v["nnUNetTrainerVanillaAdam"] = {"optimizer": "vanilla_adam"}
    v["nnUNetTrainerVanillaAdam1en3"] = {"optimizer": "vanilla_adam", "initial_lr": 1e-3}
    v["nnUNetTrainerVanillaAdam3en4"] = {"optimizer": "vanilla_adam", "initial_lr": 3e-4}
    # network_architecture
    v["nnUNetTrainerNoDeepSupervision"] = {"deep_supervision": False}
    v["nnUNetTrainerBN"] = {"norm": "batch"}
    # sampling
    v["nnUNetTrainer_probabilisticOversampling"] = {"probabilistic_oversampling": True,
                                                    "oversample_foreground_percent": None}
    v["nnUNetTrainer_probabilisticOversampling_010"] = {"probabilistic_oversampling": True,
                                                        "oversample_foreground_percent": 0.10}
    v["nnUNetTrainer_probabilisticOversampling_033"] = {"probabilistic_oversampling": True,
                                                        "oversample_foreground_percent": OVERSAMPLE_FOREGROUND_PERCENT}
    # primus/primus_trainers.py: the plain U-Net with the plan's batch size set to 8
    v["nnUNet_Trainer_BS8"] = {"batch_size": 8}
    # the seeds' recipes (oxunet): see RECIPES below
    v.update(RECIPES)
    return v


# Training recipes of the seed projects, as named variants (issue 11, item 5).
RECIPES: dict[str, dict[str, Any]] = {
    # FLARE21 "light": Dice + TopK-10 CE, deep supervision on the three finest outputs only,
    # test-time mirroring reduced to the in-plane axes
    "oxunetFLARE21Light": {"loss": "dice_topk", "topk_percent": 10.0, "deep_supervision_weights": [0.7, 0.2, 0.1],
                           "inference_mirror_axes": {"2": [0], "3": [1, 2]}},
    # BraTS 2020: region-based (regions come from dataset.json), the aggressive preset, batch Dice
    "oxunetBraTS2020": {"augmentation": "brats2020", "batch_dice": True},
    # NSCLC-style transfer: start from --pretrained weights and train everything after the encoder
    "oxunetNSCLCTransfer": {"freeze": "encoder", "initial_lr": 1e-3},
}

_ADAN = "needs the adan-pytorch optimizer, which oxunet does not ship"
_BENCH = "a throughput benchmark, not a training recipe: use `oxunet bench train` (or benches/training.py)"
UNSUPPORTED: dict[str, str] = {
    "nnUNetTrainerAdan": _ADAN,
    "nnUNetTrainerAdan1en1": _ADAN,
    "nnUNetTrainerAdan1en3": _ADAN,
    "nnUNetTrainerAdan3en4": _ADAN,
    "nnUNetTrainerAdanCosAnneal": _ADAN,
    "nnUNetTrainerBenchmark_5epochs": _BENCH,
    "nnUNetTrainerBenchmark_5epochs_noDataLoading": _BENCH,
}

VARIANTS: dict[str, dict[str, Any]] = _table()
