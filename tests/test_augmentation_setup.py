"""Initial patch size and the rotation / dummy-2D / mirror rule: equal to nnunetv2's, per preset."""

import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oxunet.training.augmentation import (
    PRESETS,
    build_training_transforms,
    configure_augmentation,
    get_patch_size,
)
from peers import require

PATCHES = [
    (128, 128, 128), (40, 56, 40), (80, 160, 160), (20, 320, 256), (48, 192, 160), (16, 256, 256), (1, 64, 64),
    (64, 48, 48), (512, 512), (56, 40), (320, 192), (1024, 96),
]


def _trainer(cls, patch_size):
    """A trainer instance without __init__: just what the configure method reads."""
    t = object.__new__(cls)
    t.configuration_manager = types.SimpleNamespace(patch_size=list(patch_size))
    t.print_to_log_file = lambda *a, **k: None
    return t


def _theirs(cls, patch_size):
    rot, dummy, initial, mirror = cls.configure_rotation_dummyDA_mirroring_and_inital_patch_size(
        _trainer(cls, patch_size))
    return tuple(rot), bool(dummy), tuple(int(i) for i in initial), None if mirror is None else tuple(mirror)


def _ours(preset, patch_size, **kw):
    s = configure_augmentation(patch_size, preset, **kw)
    return s.rotation, s.do_dummy_2d, s.initial_patch_size, s.mirror_axes


@pytest.mark.parametrize("patch_size", PATCHES)
def test_configure_matches_nnunet_trainer(patch_size):
    require("nnunetv2")
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    assert _ours("default", patch_size) == _theirs(nnUNetTrainer, patch_size)


@pytest.mark.parametrize("patch_size", PATCHES[:6] + PATCHES[-3:])
def test_configure_matches_trainer_variants(patch_size):
    require("nnunetv2")
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainer_noDummy2DDA import (
        nnUNetTrainer_noDummy2DDA,
    )
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoDA import nnUNetTrainerNoDA
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import (
        nnUNetTrainerNoMirroring,
    )

    assert _ours("da5", patch_size) == _theirs(nnUNetTrainerDA5, patch_size)
    assert _ours("no-mirroring", patch_size) == _theirs(nnUNetTrainerNoMirroring, patch_size)
    assert _ours("default", patch_size, dummy_2d=False) == _theirs(nnUNetTrainer_noDummy2DDA, patch_size)
    rot, dummy, initial, mirror = _theirs(nnUNetTrainerNoDA, patch_size)
    assert _ours("none", patch_size) == (rot, dummy, tuple(patch_size), mirror)


def test_documented_examples():
    # nnU-Net docs / spec: 128^3 with ±30° -> 205^3; a square 2D patch with ±180° is only divided by 0.85
    assert configure_augmentation((128, 128, 128)).initial_patch_size == (205, 205, 205)
    assert configure_augmentation((512, 512)).initial_patch_size == (602, 602)
    s = configure_augmentation((20, 320, 256))
    assert s.do_dummy_2d and s.initial_patch_size[0] == 20
    assert configure_augmentation((64, 48), mirror=False).mirror_axes is None


@given(
    st.lists(st.integers(4, 400), min_size=2, max_size=3),
    st.floats(0, 3.5), st.floats(0, 3.5), st.floats(0, 3.5), st.floats(0.5, 1.0),
)
def test_get_patch_size_matches_nnunet(patch, rx, ry, rz, smin):
    require("nnunetv2")
    from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size as theirs

    ours = get_patch_size(patch, (-rx, rx), (-ry, ry), (-rz, rz), (smin, 1.25))
    ref = theirs(patch, (-rx, rx), (-ry, ry), (-rz, rz), (smin, 1.25))
    np.testing.assert_array_equal(ours, ref)


def test_presets_build_for_2d_3d_and_dummy_2d():
    for name in PRESETS:
        for patch in [(24, 32, 28), (8, 40, 40), (32, 24)]:
            build_training_transforms(patch, name)


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown augmentation preset 'fancy'.*known: default"):
        build_training_transforms((32, 32, 32), "fancy")


def test_presets_round_trip_through_json():
    import json

    from oxunet.training.augmentation import preset_from_json, preset_to_json

    for preset in PRESETS.values():
        data = json.loads(json.dumps(preset_to_json(preset)))
        assert preset_from_json(data) == preset
    with pytest.raises(ValueError, match="format version"):
        preset_from_json({"version": 99, "name": "x", "steps": []})


def test_setup_and_presets_import_without_torch():
    import subprocess
    import sys

    code = ("import sys; from oxunet.training.augmentation import configure_augmentation, PRESETS, "
            "ds_scales_from_pooling; configure_augmentation((64, 64, 64), 'da5'); print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
