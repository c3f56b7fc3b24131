"""The typed plans model (issue 11, item 1): parsed once, errors naming the file and the field,
nnunetv2's plans.json round-trips to the same JSON, and nnunetv2's PlansManager loads what we write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oxunet.planning import Plans, PlansError
from oxunet.planning.plans import write_plans

TINY = Path(__file__).parent / "inference_tiny_plans.json"


@pytest.fixture(scope="module")
def nnunet_plans(tmp_path_factory):
    """A plans file written by nnunetv2's own planner (cascade: 3d_lowres + inherits_from)."""
    pytest.importorskip("nnunetv2")
    from test_planner_parity import nnunet_plan, regime, stub_dataset

    mp = pytest.MonkeyPatch()
    try:
        fp, channels, labels = regime("aniso_ct")
        root = tmp_path_factory.mktemp("nnunet_plans")
        name = "Dataset301_aniso_ct"
        stub_dataset(root / "raw", name, len(fp["spacings"]), channels, labels)
        (root / "pre" / name).mkdir(parents=True)
        (root / "pre" / name / "dataset_fingerprint.json").write_text(json.dumps(fp))
        nnunet_plan(mp, root / "raw", root / "pre", name)
    finally:
        mp.undo()
    return root / "pre" / name / "nnUNetPlans.json"


def test_nnunet_plans_round_trip_to_the_same_json(nnunet_plans, tmp_path):
    text = nnunet_plans.read_text()
    plans = Plans.load(nnunet_plans)
    assert set(plans.configurations) >= {"2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"}
    assert plans.to_dict() == json.loads(text) and list(plans.to_dict()) == list(json.loads(text))
    assert plans.to_json() == json.dumps(json.loads(text), indent=4)  # nnU-Net's save_json layout
    # the cascade stage is resolved from the one it inherits from
    cascade = plans.configuration("3d_cascade_fullres")
    assert cascade.inherits_from == "3d_fullres" and cascade.previous_stage == "3d_lowres"
    assert cascade.patch_size == plans.configuration("3d_fullres").patch_size
    assert plans.configuration("3d_lowres").next_stage == ("3d_cascade_fullres",)
    assert "inherits_from" in plans.entries["3d_cascade_fullres"] and "patch_size" not in plans.entries["3d_cascade_fullres"]
    out = tmp_path / "written.json"
    write_plans(plans.to_dict(), out, keep_custom_configurations=False)
    assert json.loads(out.read_text()) == json.loads(text)


def test_nnunet_plans_manager_loads_what_we_write(nnunet_plans, tmp_path):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    ours = Plans.load(nnunet_plans)
    out = tmp_path / "plans.json"
    out.write_text(ours.to_json())
    pm = PlansManager(str(out))
    assert pm.plans_name == ours.plans_name and list(pm.transpose_forward) == list(ours.transpose_forward)
    for name, cfg in ours.configurations.items():
        theirs = pm.get_configuration(name)
        assert list(theirs.patch_size) == list(cfg.patch_size)
        assert theirs.batch_size == cfg.batch_size and theirs.batch_dice == cfg.batch_dice
        assert list(theirs.spacing) == list(cfg.spacing)
        assert theirs.network_arch_class_name == cfg.architecture.network_class_name
        assert theirs.previous_stage_name == cfg.previous_stage
    # and our own planner's plans too
    tiny = Plans.load(TINY)
    out.write_text(tiny.to_json())
    assert PlansManager(str(out)).get_configuration("2d").patch_size == [24, 20]


def test_typed_fields_are_frozen_and_typed():
    plans = Plans.load(TINY)
    cfg = plans.configuration("3d_fullres")
    assert cfg.patch_size == (20, 24, 20) and cfg.dim == 3 and cfg.batch_size == 2
    assert cfg.architecture.strides == ((1, 1, 1), (2, 2, 2), (2, 2, 2))
    assert cfg.normalization_schemes == ("CTNormalization",) and cfg.use_mask_for_norm == (False,)
    with pytest.raises(AttributeError):
        cfg.batch_size = 3  # frozen
    with pytest.raises(TypeError):
        cfg.architecture.arch_kwargs["n_stages"] = 2  # read-only mapping
    # the typed architecture builds the same network as the dict
    from oxunet.networks import build_network

    a = build_network(cfg.architecture, 1, 3)
    b = build_network(cfg.to_dict()["architecture"], 1, 3)
    assert list(a.state_dict()) == list(b.state_dict())


def test_errors_name_the_file_and_the_field(tmp_path):
    d = json.loads(TINY.read_text())
    bad = json.loads(json.dumps(d))
    bad["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = 7
    p = tmp_path / "broken_plans.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(PlansError, match=r"broken_plans\.json: configurations\.3d_fullres\.architecture\.network_class_name"):
        Plans.load(p)
    bad = json.loads(json.dumps(d))
    bad["configurations"]["2d"]["data_identifier"] = 3
    p.write_text(json.dumps(bad))
    with pytest.raises(PlansError, match=r"broken_plans\.json: configurations\.2d\.data_identifier: expected str"):
        Plans.load(p)
    with pytest.raises(PlansError, match=r"configuration '3d_lowres' does not exist \(available: 2d, 3d_fullres\)"):
        Plans.load(TINY).configuration("3d_lowres")
    p.write_text("{")
    with pytest.raises(PlansError, match="broken_plans.json: cannot be read as JSON"):
        Plans.load(p)


def test_one_home_for_the_anisotropy_threshold():
    import oxunet.constants as c
    from oxunet.kernels.reference import resampling
    from oxunet.planning import planner
    from oxunet.preprocessing import configuration
    from oxunet.training.augmentation import setup

    assert all(m.ANISO_THRESHOLD is c.ANISO_THRESHOLD for m in (resampling, planner, configuration, setup))
    import nnunetv2.configuration as theirs

    assert c.ANISO_THRESHOLD == theirs.ANISO_THRESHOLD


def test_stages_read_the_typed_plans_as_the_dict():
    from oxunet.inference.export import ExportPlan
    from oxunet.preprocessing.configuration import PreprocessingPlan
    from oxunet.preprocessing.pipeline import _dataset_info

    d = json.loads(TINY.read_text())
    typed = Plans.from_dict(d, str(TINY))
    ds = _dataset_info({"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 1,
                        "file_ending": ".nii.gz"})
    for name in ("2d", "3d_fullres"):
        assert PreprocessingPlan.from_plans(typed, name) == PreprocessingPlan.from_plans(d, name)
        assert ExportPlan.from_plans(typed, name, ds) == ExportPlan.from_plans(d, name, ds)
    assert PreprocessingPlan.from_plans(typed, "3d_fullres").patch_size == (20, 24, 20)
