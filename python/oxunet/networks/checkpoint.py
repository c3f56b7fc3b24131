"""Load nnU-Net / oxunet checkpoint files without unpickling arbitrary code.

nnU-Net saves ``checkpoint_*.pth`` with ``torch.save`` and loads them with ``weights_only=False``,
which executes whatever the pickle names. We load with ``weights_only=True`` and allow, beyond
torch's own safe set, only the numpy types nnU-Net's checkpoints hold: numpy scalars (EMA, pseudo
Dice, losses in ``logging``), their dtypes, and plain numpy arrays.
"""

from __future__ import annotations

import os
import pickle
from contextlib import nullcontext
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import OxunetError


class CheckpointError(OxunetError, ValueError):
    """A checkpoint file is missing, truncated, corrupt or refused (names the file)."""


class CheckpointNotFoundError(OxunetError, FileNotFoundError):
    """The checkpoint file does not exist."""


# the part of torch's refusal message that names the blocked global (wording of torch < 2.4
# and of torch >= 2.4)
_REFUSAL_MARKERS = ("Unsupported global", "unsupported GLOBAL", "is blocked", "not an allowed global")

# dtype classes a numpy scalar/array of these kinds unpickles through (numpy >= 1.25 has np.dtypes)
_NUMPY_DTYPE_NAMES = (
    "Float16DType", "Float32DType", "Float64DType", "LongDoubleDType",
    "Int8DType", "Int16DType", "Int32DType", "Int64DType", "LongLongDType",
    "UInt8DType", "UInt16DType", "UInt32DType", "UInt64DType", "ULongLongDType",
    "BoolDType", "StrDType",
)


def _numpy_core():
    # numpy 2 moved multiarray under numpy._core; numpy 1 has numpy.core
    core = getattr(np, "_core", None)
    return core if core is not None and hasattr(core, "multiarray") else np.core


def numpy_safe_globals() -> list[Any]:
    """The numpy callables/classes a weights-only load of an nnU-Net checkpoint must accept."""
    multiarray = _numpy_core().multiarray
    allowed: list[Any] = [multiarray.scalar, multiarray._reconstruct, np.dtype, np.ndarray]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in _NUMPY_DTYPE_NAMES if hasattr(dtypes, n)]
    return allowed


def _allow_numpy():
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is not None:  # torch >= 2.5: scoped to this load
        return safe_globals(numpy_safe_globals())
    torch.serialization.add_safe_globals(numpy_safe_globals())  # torch 2.4: process-wide
    return nullcontext()


def load_nnunet_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a ``checkpoint_*.pth`` (nnU-Net's or ours) with ``torch.load(weights_only=True)``.

    Returns the checkpoint dict (``network_weights``, ``optimizer_state``, ``init_args``,
    ``trainer_name``, ``inference_allowed_mirroring_axes``, ...). Raises ``FileNotFoundError`` for a
    missing file and ``ValueError`` naming the file for anything that is not a loadable checkpoint,
    including pickles that reference classes outside the allow-list.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    try:
        with _allow_numpy():
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = [line.strip() for line in str(exc).splitlines() if any(m in line for m in _REFUSAL_MARKERS)]
        if refused:
            raise CheckpointError(
                f"{path}: refused to load: the checkpoint references objects outside oxunet's allow-list "
                f"(torch tensors, containers, numpy scalars/arrays): {refused[0]}"
            ) from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or corrupt: {detail})") from exc
    if not isinstance(checkpoint, Mapping) or "network_weights" not in checkpoint:
        keys = sorted(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointError(f"{path}: not an nnU-Net checkpoint (no 'network_weights'; found {keys})")
    return dict(checkpoint)


_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def network_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """``network_weights`` with DDP / torch.compile prefixes removed, ready for ``load_state_dict``."""
    weights = checkpoint["network_weights"] if "network_weights" in checkpoint else checkpoint
    out = {}
    for key, value in weights.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        out[key] = value
    return out
