"""The plans file: nnunetv2 loads ours (and builds its networks), we load and import theirs,
writes are atomic and keep custom configurations, bad files are named in the error."""

from __future__ import annotations

import json

import pytest

from oxunet.dataset import resolve_paths
from oxunet.planning import PlansError, import_nnunet_plans, load_plans, plan_from_fingerprint, validate_plans, write_plans
from oxunet.planning.plans import oxunet_stamp
from peers import require
from test_planner_parity import nnunet_plan, regime, set_nnunet_env, stub_dataset


def _our_plans(regime_name, planner="default", name="Dataset300_X"):
    fp, channels, labels = regime(regime_name)
    ds = {
        "channel_names": {str(i): c for i, c in enumerate(channels)},
        "labels": {"background": 0, **{f"l{i}": i for i in range(1, labels + 1)}},
        "numTraining": len(fp["spacings"]),
        "file_ending": ".nii.gz",
    }
    plans = plan_from_fingerprint(fp, ds, name, "SimpleITKIO", planner)
    plans["oxunet"] = oxunet_stamp(planner=planner)
    return json.loads(json.dumps(plans)), ds


@pytest.mark.parametrize("regime_name,planner", [("aniso_ct", "default"), ("aniso_ct", "ResEncM"), ("two_d", "ResEncL")])
def test_nnunet_plans_manager_loads_our_plans_and_builds_every_network(regime_name, planner):
    require("nnunetv2")
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans, ds = _our_plans(regime_name, planner)
    pm = PlansManager(plans)
    assert pm.image_reader_writer_class.__name__ == "SimpleITKIO"
    assert pm.experiment_planner_class.__name__ == plans["experiment_planner_used"]
    lm = pm.get_label_manager(ds)
    for name in pm.available_configurations:
        cm = pm.get_configuration(name)
        assert cm.preprocessor_class.__name__ == "DefaultPreprocessor"
        assert callable(cm.resampling_fn_data) and callable(cm.resampling_fn_seg) and callable(cm.resampling_fn_probabilities)
        assert len(cm.normalization_schemes) == len(ds["channel_names"])
        in_ch = determine_num_input_channels(pm, cm, ds)
        with torch.device("meta"):
            net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
                                         in_ch, lm.num_segmentation_heads, allow_init=False, deep_supervision=True)
            out = net(torch.zeros((cm.batch_size, in_ch, *cm.patch_size)))
        assert out[0].shape == (cm.batch_size, lm.num_segmentation_heads, *cm.patch_size)
        if cm.previous_stage_name:
            assert in_ch == len(ds["channel_names"]) + len(lm.foreground_labels)


def test_our_small_plan_runs_a_real_forward_pass():
    require("nnunetv2")
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans, ds = _our_plans("iso_small")
    cm = PlansManager(plans).get_configuration("3d_fullres")
    assert cm.patch_size == [40, 56, 40]
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import, 1, 3)
    with torch.no_grad():
        assert net(torch.zeros((1, 1, *cm.patch_size))).shape == (1, 3, 40, 56, 40)


def test_write_is_atomic_and_keeps_custom_configurations(tmp_path):
    plans, _ = _our_plans("iso_small")
    path = tmp_path / "Dataset300_X" / "nnUNetPlans.json"
    write_plans(plans, path)
    on_disk = json.loads(path.read_text())
    on_disk["configurations"]["3d_fullres_bs8"] = {"inherits_from": "3d_fullres", "batch_size": 8}
    on_disk["configurations"]["3d_fullres"]["batch_size"] = 99  # a planned configuration is re-planned
    path.write_text(json.dumps(on_disk))
    written = write_plans(plans, path)
    again = load_plans(path)
    assert again == written
    assert again["configurations"]["3d_fullres_bs8"] == {"inherits_from": "3d_fullres", "batch_size": 8}
    assert again["configurations"]["3d_fullres"]["batch_size"] == plans["configurations"]["3d_fullres"]["batch_size"]
    assert [p.name for p in path.parent.iterdir()] == ["nnUNetPlans.json"]  # no temporary left behind
    path.write_text("{broken")
    with pytest.raises(PlansError, match="existing plans file cannot be read"):
        write_plans(plans, path)


def _broken(mutate):
    plans, _ = _our_plans("aniso_ct")
    mutate(plans)
    return plans


@pytest.mark.parametrize("mutate,message", [
    (lambda p: p.pop("transpose_forward"), "missing transpose_forward"),
    (lambda p: p.update(transpose_backward=[0, 1, 2], transpose_forward=[1, 0, 2]) or None, "not inverse permutations"),
    (lambda p: p["configurations"].update(x={"inherits_from": "y"}), "inherits from 'y', which does not exist"),
    (lambda p: p["configurations"].update(a={"inherits_from": "b"}, b={"inherits_from": "a"}), "circular inheritance"),
    (lambda p: p["configurations"]["2d"].update(patch_size=[100, 96]), "not divisible by the total stride"),
    (lambda p: p["configurations"]["2d"].update(normalization_schemes=["Foo"]), "unknown normalization"),
    (lambda p: p["configurations"]["2d"].update(batch_size=0), "batch_size must be a positive integer"),
    (lambda p: p["configurations"]["2d"].pop("architecture") and p["configurations"]["2d"].update(UNet_class_name="PlainConvUNet"), "old nnU-Net plans format"),
    (lambda p: p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].update(n_stages=3), "must have n_stages=3"),
    (lambda p: p["oxunet"].update(format_version=99), "written by a newer oxunet"),
    (lambda p: p["oxunet"].update(artefact="fingerprint"), "not plans"),
])
def test_load_plans_names_file_and_problem(tmp_path, mutate, message):
    path = tmp_path / "nnUNetPlans.json"
    path.write_text(json.dumps(_broken(mutate)))
    with pytest.raises(PlansError, match=message) as e:
        load_plans(path)
    assert str(path) in str(e.value)


def test_load_plans_missing_or_corrupt_file(tmp_path):
    with pytest.raises(PlansError, match=r"plans file not found.*oxunet plan") as e:
        load_plans(tmp_path / "nope.json")
    assert "nope.json" in str(e.value)
    (tmp_path / "bad.json").write_text("{ not json")
    with pytest.raises(PlansError, match="bad.json: cannot be read as JSON"):
        load_plans(tmp_path / "bad.json")


def test_validate_accepts_nnunet_written_plans(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    fp, channels, labels = regime("aniso_ct")
    stub_dataset(raw, "Dataset300_X", len(fp["spacings"]), channels, labels)
    (tmp_path / "pre" / "Dataset300_X").mkdir(parents=True)
    (tmp_path / "pre" / "Dataset300_X" / "dataset_fingerprint.json").write_text(json.dumps(fp))
    theirs = nnunet_plan(monkeypatch, raw, tmp_path / "pre", "Dataset300_X", "ResEncM")
    validate_plans(theirs, "theirs")
    assert "oxunet" not in theirs


def test_import_matches_nnunet_move_plans_between_datasets(tmp_path, monkeypatch):
    """Import = nnU-Net's ``move_plans_between_datasets`` (dataset name, plans name, data
    identifiers, reader from the target's raw data) + validation + our stamp."""
    require("nnunetv2")
    from nnunetv2.experiment_planning.plans_for_pretraining.move_plans_between_datasets import move_plans_between_datasets

    raw, pre = tmp_path / "raw", tmp_path / "pre"
    fp, channels, labels = regime("aniso_ct")
    stub_dataset(raw, "Dataset300_Source", len(fp["spacings"]), channels, labels)
    stub_dataset(raw, "Dataset301_Target", 3, channels, labels)
    (pre / "Dataset300_Source").mkdir(parents=True)
    (pre / "Dataset300_Source" / "dataset_fingerprint.json").write_text(json.dumps(fp))
    nnunet_plan(monkeypatch, raw, pre, "Dataset300_Source")
    (pre / "Dataset301_Target").mkdir()
    set_nnunet_env(monkeypatch, raw, pre)
    move_plans_between_datasets(300, 301, "nnUNetPlans", "MovedPlans")
    theirs = json.loads((pre / "Dataset301_Target" / "MovedPlans.json").read_text())

    ours_pre = tmp_path / "ours"
    paths = resolve_paths(raw, ours_pre, tmp_path / "results")
    ours = import_nnunet_plans(pre / "Dataset300_Source" / "nnUNetPlans.json", 301, paths, "MovedPlans")
    on_disk = load_plans(ours_pre / "Dataset301_Target" / "MovedPlans.json")
    assert on_disk == ours
    assert ours.pop("oxunet")["imported_from"].endswith("nnUNetPlans.json")
    assert ours == theirs
    assert ours["configurations"]["3d_lowres"]["data_identifier"] == "MovedPlans_3d_lowres"
    assert (ours_pre / "Dataset301_Target" / "dataset.json").is_file()


def test_import_refuses_mismatched_channels_and_in_place_files(tmp_path):
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    plans, _ = _our_plans("aniso_ct")
    stub_dataset(raw, "Dataset302_TwoChannels", 2, ("CT", "CT"), 2)
    src = tmp_path / "nnUNetPlans.json"
    src.write_text(json.dumps(plans))
    paths = resolve_paths(raw, pre, tmp_path / "results")
    with pytest.raises(PlansError, match=r"normalizes 1 channel\(s\).*declares 2"):
        import_nnunet_plans(src, 302, paths)
    stub_dataset(raw, "Dataset303_One", 2, ("CT",), 2)
    imported = import_nnunet_plans(src, 303, paths)
    assert imported["dataset_name"] == "Dataset303_One"
    with pytest.raises(PlansError, match="already the plans file"):
        import_nnunet_plans(pre / "Dataset303_One" / "nnUNetPlans.json", 303, paths)
