"""Prediction as nnU-Net v2's ``nnUNetPredictor`` / ``nnUNetv2_predict`` (spec §14).

* :func:`load_model_folder` -- a trained-model folder (oxunet's or nnU-Net v2's).
* :class:`Predictor` -- sliding windows, mirroring TTA, fold averaging, export; files or arrays.
* :func:`predict_folder` -- a folder of raw cases, with preprocessing, network and export overlapping.
* :mod:`oxunet.inference.export` -- logits → segmentation/probabilities in the input geometry.

Importing this package does not import torch; the predictor imports it when built.
"""

from .model_folder import InferenceError, ModelFolder, available_folds, load_model_folder

__all__ = ["InferenceError", "ModelFolder", "PredictionResult", "Predictor", "available_folds", "load_model_folder",
           "predict_folder"]


def __getattr__(name: str):
    if name in ("Predictor", "PredictionResult"):
        from . import predictor

        return getattr(predictor, name)
    if name == "predict_folder":
        from .folder import predict_folder

        return predict_folder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
