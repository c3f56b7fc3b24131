"""Per-case preprocessing parity with nnunetv2's DefaultPreprocessor (plans made by nnunetv2 itself)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

import synthetic
from oxunet.preprocessing import (
    PlansError,
    PreprocessingError,
    PreprocessingPlan,
    class_location_keys,
    compute_new_shape,
    preprocess_case,
    resolve_configuration,
)
from peers import require
from synthetic import make_dataset, make_padded_dataset

# ------------------------------------------------------------------------------------------
# nnunetv2 as the oracle (also imported by test_preprocess_run.py)
# ------------------------------------------------------------------------------------------


class _ForkContext:
    """Stands in for the ``multiprocessing`` module inside nnU-Net's fingerprint extractor: fork
    instead of spawn gives the same results without starting fresh interpreters (~10 s each)."""

    def get_context(self, method=None):
        return multiprocessing.get_context("fork")


def nnunet_plans(raw_root: Path, pre_root: Path, name: str) -> dict:
    """Fingerprint + ExperimentPlanner of nnunetv2 on ``raw_root/name``; returns the plans dict.

    The fingerprint draws 1e6 foreground intensities instead of nnU-Net's 1e8 (most of its run
    time): the statistics move slightly, but the plans are still nnU-Net's for that fingerprint,
    and preprocessing parity is about following the plans."""
    require("nnunetv2")
    import nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor as fe
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()):
        mp.setenv("nnUNet_raw", str(raw_root))
        mp.setenv("nnUNet_preprocessed", str(pre_root))
        mp.setenv("nnUNet_results", str(pre_root.parent / "results"))
        mp.setattr(fe, "multiprocessing", _ForkContext())
        extractor = fe.DatasetFingerprintExtractor(name, 1, verbose=False)
        extractor.show_progress_bar = False
        extractor.num_foreground_voxels_for_intensitystats = 1e6
        extractor.run(overwrite_existing=True)
        ExperimentPlanner(name).plan_experiment()
    return json.loads((pre_root / name / "nnUNetPlans.json").read_text())


def save_plans(pre_root: Path, name: str, plans: dict) -> None:
    (pre_root / name / "nnUNetPlans.json").write_text(json.dumps(plans, indent=1))


def raw_cases(raw_dir: Path) -> dict[str, tuple[list[Path], Path]]:
    ending = json.loads((raw_dir / "dataset.json").read_text())["file_ending"]
    out = {}
    for label in sorted((raw_dir / "labelsTr").glob(f"*{ending}")):
        case = label.name[: -len(ending)]
        out[case] = (sorted((raw_dir / "imagesTr").glob(f"{case}_[0-9][0-9][0-9][0-9]{ending}")), label)
    return out


def nnunet_run_case(images, label, plans: dict, configuration: str, dataset_json: dict):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(copy.deepcopy(plans))
    with contextlib.redirect_stdout(io.StringIO()):
        return DefaultPreprocessor(verbose=False).run_case(
            [str(p) for p in images], None if label is None else str(label), pm, pm.get_configuration(configuration),
            copy.deepcopy(dataset_json))


def assert_same_as_nnunet(ours, theirs, where: str) -> None:
    """The acceptance criteria: data within 1e-3 of the value range, seg identical on >= 99.99 %,
    geometry properties equal, class-location keys and counts equal."""
    d_o, s_o, p_o = ours
    d_t, s_t, p_t = theirs
    assert d_o.dtype == np.float32 and d_o.shape == d_t.shape, where
    value_range = max(float(d_t.max() - d_t.min()), 1e-6)
    err = float(np.abs(d_o - d_t).max()) / value_range
    assert err <= 1e-3, f"{where}: data differ by {err:.2e} of the value range"
    assert s_o.shape == s_t.shape and s_o.dtype == s_t.dtype, where
    agree = float((s_o == s_t).mean())
    assert agree >= 0.9999, f"{where}: seg agrees on {agree:.6f} of the voxels"
    assert p_o["bbox_used_for_cropping"] == [[int(a), int(b)] for a, b in p_t["bbox_used_for_cropping"]], where
    assert p_o["shape_before_cropping"] == [int(s) for s in p_t["shape_before_cropping"]], where
    assert p_o["shape_after_cropping_and_before_resampling"] == [
        int(s) for s in p_t["shape_after_cropping_and_before_resampling"]], where
    np.testing.assert_allclose(p_o["spacing"], p_t["spacing"], rtol=1e-12, err_msg=where)
    assert ("class_locations" in p_o) == ("class_locations" in p_t), where
    if "class_locations" in p_t:
        assert list(p_o["class_locations"]) == list(p_t["class_locations"]), where
        for key, theirs_locs in p_t["class_locations"].items():
            locs = p_o["class_locations"][key]
            assert len(locs) == len(theirs_locs), f"{where}: class {key}: {len(locs)} vs {len(theirs_locs)} locations"
            if len(locs):
                labels = key if isinstance(key, tuple) else (key,)
                assert locs.shape[1] == 4 and np.all(locs[:, 0] == 0)
                assert np.isin(s_o[tuple(locs.T)], labels).all(), f"{where}: class {key}: a location is not in the class"
                assert len(np.unique(locs, axis=0)) == len(locs), f"{where}: class {key}: repeated locations"


def run_parity(raw_dir: Path, plans: dict, configurations, cases=None, dataset_json=None, with_seg=True) -> int:
    dataset_json = dataset_json or json.loads((raw_dir / "dataset.json").read_text())
    n = 0
    for configuration in configurations:
        for case, (images, label) in raw_cases(raw_dir).items():
            if cases is not None and case not in cases:
                continue
            label = label if with_seg else None
            theirs = nnunet_run_case(images, label, plans, configuration, dataset_json)
            ours = preprocess_case(images, label, None, plans, configuration, dataset_json, case=case)
            assert_same_as_nnunet(ours, theirs, f"{configuration}/{case}")
            n += 1
    return n


# ------------------------------------------------------------------------------------------
# datasets (planned once per module)
# ------------------------------------------------------------------------------------------

CT_SHAPES = [(12, 40, 44), (15, 38, 40), (10, 42, 42), (20, 40, 36), (14, 36, 40)]
CT_SPACINGS = [(3.0, 0.8, 0.8), (4.5, 0.75, 0.75), (5.0, 0.7, 0.7), (2.0, 0.75, 0.75), (3.5, 0.8, 0.8)]


def add_test_configurations(plans: dict) -> dict:
    """A 3d_lowres inheriting from 3d_fullres (coarser, isotropic-enough target: the plain 3D
    order-3 path for the 2 mm case) and one with non-default resampling kwargs."""
    plans = copy.deepcopy(plans)
    plans["configurations"]["3d_lowres"] = {
        "inherits_from": "3d_fullres", "data_identifier": "nnUNetPlans_3d_lowres", "spacing": [3.0, 1.5, 1.5]}
    plans["configurations"]["3d_linear"] = {
        "inherits_from": "3d_lowres", "data_identifier": "nnUNetPlans_3d_linear",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 1, "order_z": 1, "force_separate_z": True},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 0, "order_z": 0, "force_separate_z": False},
    }
    return plans


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """Anisotropic CT-like dataset (3.5–5 mm × 0.7–0.8 mm, one 2 mm case): CTNormalization, separate-z."""
    root = tmp_path_factory.mktemp("ct")
    raw = make_dataset(root / "raw" / "Dataset201_CT", shapes=CT_SHAPES, spacings=CT_SPACINGS)
    plans = add_test_configurations(nnunet_plans(root / "raw", root / "pre", "Dataset201_CT"))
    return raw, plans


@pytest.fixture(scope="module")
def mr(tmp_path_factory):
    """Three channels (ZScore with mask, RescaleTo01, NoNorm) in a wide zero border, anisotropic
    along the last numpy axis (so transpose_forward is not the identity)."""
    root = tmp_path_factory.mktemp("mr")
    raw = make_padded_dataset(
        root / "raw" / "Dataset202_MR",
        shapes=[(30, 32, 8), (28, 34, 9), (31, 30, 7)],
        spacings=[(0.8, 0.8, 3.0), (0.75, 0.75, 3.5), (0.8, 0.8, 4.0)],
    )
    return raw, nnunet_plans(root / "raw", root / "pre", "Dataset202_MR")


# ------------------------------------------------------------------------------------------
# parity
# ------------------------------------------------------------------------------------------


def test_ct_plans_exercise_separate_z_and_inheritance(ct):
    _, plans = ct
    full = PreprocessingPlan.from_plans(plans, "3d_fullres")
    assert full.normalization_schemes == ("CTNormalization",)
    assert max(full.spacing) / min(full.spacing) > 3  # anisotropic target: separate-z
    low = PreprocessingPlan.from_plans(plans, "3d_linear")
    assert low.spacing == (3.0, 1.5, 1.5) and low.normalization_schemes == full.normalization_schemes
    assert (low.resampling_data.order, low.resampling_data.order_z, low.resampling_data.force_separate_z) == (1, 1, True)
    assert (low.resampling_seg.order, low.resampling_seg.force_separate_z) == (0, False)


def test_matches_nnunet_on_anisotropic_ct(ct):
    raw, plans = ct
    assert run_parity(raw, plans, ["3d_fullres", "2d", "3d_lowres", "3d_linear"]) == 4 * len(CT_SHAPES)


def test_matches_nnunet_with_masked_zscore_multichannel_and_transpose(mr):
    raw, plans = mr
    assert plans["transpose_forward"] != [0, 1, 2]
    cfg = plans["configurations"]["3d_fullres"]
    assert cfg["normalization_schemes"] == ["ZScoreNormalization", "RescaleTo01Normalization", "NoNormalization"]
    assert cfg["use_mask_for_norm"] == [True, False, False]
    assert run_parity(raw, plans, ["3d_fullres", "2d"]) == 6


def test_matches_nnunet_on_hippocampus_subset(tmp_path, monkeypatch):
    source = synthetic.hippocampus_dir()
    if source is None:
        pytest.skip("Hippocampus data not present (../shared/data/Dataset004_Hippocampus or $OXUNET_HIPPOCAMPUS)")
    monkeypatch.setattr(synthetic, "HIPPOCAMPUS", source)
    raw = synthetic.hippocampus_subset(tmp_path / "raw" / "Dataset004_Hippocampus", 6)
    plans = nnunet_plans(tmp_path / "raw", tmp_path / "pre", "Dataset004_Hippocampus")
    configurations = [c for c in ("2d", "3d_fullres", "3d_lowres") if c in plans["configurations"]]
    assert run_parity(raw, plans, configurations) == 6 * len(configurations)


def test_inference_without_seg_matches_nnunet(ct, mr):
    for raw, plans in (ct, mr):
        first = next(iter(raw_cases(raw)))
        run_parity(raw, plans, ["3d_fullres"], cases={first}, with_seg=False)
    raw, plans = ct
    images, _ = next(iter(raw_cases(raw).values()))
    data, seg, props = preprocess_case(images, None, None, plans, "3d_fullres")
    assert "class_locations" not in props and seg.dtype == np.int8 and set(np.unique(seg)) <= {-1, 0}


def test_regions_and_ignore_label_class_keys_match_nnunet(ct):
    raw, plans = ct
    ds = json.loads((raw / "dataset.json").read_text())
    regions = dict(ds, labels={"background": 0, "whole": [1, 2], "organ2": [2], "ignore": 3}, regions_class_order=[1, 2])
    assert class_location_keys(regions) == [(1, 2), (2,), (-1, 0, 1, 2)]
    plain_ignore = dict(ds, labels={"background": 0, "organ1": 1, "organ2": 2, "ignore": 3})
    assert class_location_keys(plain_ignore) == [1, 2, (-1, 0, 1, 2)]
    first = next(iter(raw_cases(raw)))
    for variant in (regions, plain_ignore):
        run_parity(raw, plans, ["3d_fullres"], cases={first}, dataset_json=variant)


def test_array_input_is_not_modified_and_matches_file_input(ct):
    raw, plans = ct
    from oxunet.io import SimpleITKIO

    images, label = next(iter(raw_cases(raw).values()))
    data, props = SimpleITKIO().read_images(images)
    seg, _ = SimpleITKIO().read_seg(label)
    before = data.copy()
    ours = preprocess_case(data, seg, props, plans, "3d_fullres", raw / "dataset.json")
    np.testing.assert_array_equal(data, before)
    from_files = preprocess_case(images, label, None, plans, "3d_fullres", raw / "dataset.json")
    np.testing.assert_array_equal(ours[0], from_files[0])
    np.testing.assert_array_equal(ours[1], from_files[1])


# ------------------------------------------------------------------------------------------
# plans handling and small functions vs nnunetv2
# ------------------------------------------------------------------------------------------


def test_inheritance_resolves_as_plans_manager(ct):
    require("nnunetv2")
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    _, plans = ct
    pm = PlansManager(copy.deepcopy(plans))
    for name in plans["configurations"]:
        assert resolve_configuration(plans, name) == pm._internal_resolve_configuration_inheritance(name)
    cyclic = copy.deepcopy(plans)
    cyclic["configurations"]["3d_fullres"]["inherits_from"] = "3d_linear"
    with pytest.raises(PlansError, match="circular inheritance 3d_linear -> 3d_lowres -> 3d_fullres -> 3d_linear"):
        resolve_configuration(cyclic, "3d_linear")
    with pytest.raises(PlansError, match="'3d_nope' does not exist"):
        resolve_configuration(plans, "3d_nope")


def test_compute_new_shape_matches_nnunet():
    require("nnunetv2")
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape as theirs

    rng = np.random.default_rng(0)
    cases = [((5, 7, 9), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0)), ((3, 5, 7), (0.5, 1.5, 2.5), (1.0, 1.0, 1.0))]
    for _ in range(200):
        shape = tuple(int(v) for v in rng.integers(1, 300, 3))
        cases.append((shape, tuple(rng.uniform(0.3, 5, 3)), tuple(rng.uniform(0.3, 5, 3))))
    for shape, old, new in cases:
        assert compute_new_shape(shape, old, new) == [int(v) for v in theirs(shape, old, new)]


def test_plans_errors_are_clear(ct):
    _, plans = ct

    def broken(**changes):
        p = copy.deepcopy(plans)
        p["configurations"]["3d_fullres"].update(changes)
        return p

    with pytest.raises(PlansError, match="unknown normalization scheme 'MyNorm'"):
        PreprocessingPlan.from_plans(broken(normalization_schemes=["MyNorm"]), "3d_fullres")
    with pytest.raises(PlansError, match="resampling_fn_data 'resample_torch_fornnunet' is not supported"):
        PreprocessingPlan.from_plans(broken(resampling_fn_data="resample_torch_fornnunet"), "3d_fullres")
    with pytest.raises(PlansError, match="preprocessor 'MyPreprocessor' is not supported"):
        PreprocessingPlan.from_plans(broken(preprocessor_name="MyPreprocessor"), "3d_fullres")
    with pytest.raises(PlansError, match="missing 'spacing'"):
        p = copy.deepcopy(plans)
        del p["configurations"]["3d_fullres"]["spacing"]
        PreprocessingPlan.from_plans(p, "3d_fullres")
    with pytest.raises(PlansError, match="1 normalization_schemes but 2 use_mask_for_norm"):
        PreprocessingPlan.from_plans(broken(use_mask_for_norm=[False, True]), "3d_fullres")
    with pytest.raises(PlansError, match="image_reader_writer 'NoSuchIO' is not supported"):
        PreprocessingPlan.from_plans(dict(plans, image_reader_writer="NoSuchIO"), "3d_fullres")
    identity = PreprocessingPlan.from_plans(broken(resampling_fn_data="no_resampling_hack", resampling_fn_data_kwargs={}), "3d_fullres")
    assert identity.resampling_data.fn == "no_resampling_hack"


def test_bad_case_inputs_name_the_case(ct, tmp_path):
    raw, plans = ct
    from oxunet.io import SimpleITKIO

    images, label = next(iter(raw_cases(raw).values()))
    data, props = SimpleITKIO().read_images(images)
    seg, _ = SimpleITKIO().read_seg(label)
    ds = raw / "dataset.json"
    with pytest.raises(PreprocessingError, match="case c7: segmentation shape .* does not match"):
        preprocess_case(data, seg[:, :-1], props, plans, "3d_fullres", ds, case="c7")
    with pytest.raises(PreprocessingError, match="case c7: 2 image channel"):
        preprocess_case(np.concatenate([data, data]), seg, props, plans, "3d_fullres", ds, case="c7")
    with pytest.raises(PreprocessingError, match="case c7: the segmentation has non-integer values"):
        preprocess_case(data, seg + 0.5, props, plans, "3d_fullres", ds, case="c7")
    with pytest.raises(PreprocessingError, match=r"case c7: segmentation values must lie in \[0, 32767\]"):
        preprocess_case(data, seg - 1, props, plans, "3d_fullres", ds, case="c7")
    with pytest.raises(PreprocessingError, match="case c7: the segmentation contains NaN"):
        preprocess_case(data, np.where(seg > 0, np.nan, seg).astype(np.float32), props, plans, "3d_fullres", ds, case="c7")
    with pytest.raises(TypeError, match="needs dataset="):
        preprocess_case(data, seg, props, plans, "3d_fullres")
    bad = tmp_path / "case_000_0000.nii.gz"
    bad.write_bytes(b"not an image")
    with pytest.raises(Exception, match="case_000_0000.nii.gz"):
        preprocess_case([bad], None, None, plans, "3d_fullres")
