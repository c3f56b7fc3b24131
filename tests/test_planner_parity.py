"""Plans parity with nnunetv2's planners: the same fingerprint goes to both, and the plans files
must be equal (every field, every configuration; only our ``oxunet`` key is extra).

nnU-Net's planner estimates VRAM by building the network; we run it inside
``torch.device("meta")`` so that building allocates nothing (the estimate is arithmetic on
sizes, so the numbers are unchanged) and the tests stay quick.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from oxunet.dataset import resolve_paths
from oxunet.planning import plan_experiment
from peers import require
from synthetic import copy_dataset_subset, find_shared_dataset, make_2d_dataset, make_dataset

HIPPOCAMPUS = find_shared_dataset("Dataset004_Hippocampus")
NO_HIPPOCAMPUS = "shared/data/Dataset004_Hippocampus is not present (CI data only)"

NNUNET_CLASS = {
    "default": "ExperimentPlanner",
    "ResEnc": "ResEncUNetPlanner",
    "ResEncM": "nnUNetPlannerResEncM",
    "ResEncL": "nnUNetPlannerResEncL",
    "ResEncXL": "nnUNetPlannerResEncXL",
}
COMPARED_CONFIG_FIELDS = (
    "data_identifier", "preprocessor_name", "batch_size", "patch_size", "median_image_size_in_voxels", "spacing",
    "normalization_schemes", "use_mask_for_norm", "resampling_fn_data", "resampling_fn_seg",
    "resampling_fn_data_kwargs", "resampling_fn_seg_kwargs", "resampling_fn_probabilities",
    "resampling_fn_probabilities_kwargs", "batch_dice", "next_stage", "previous_stage", "inherits_from",
)


# ---------------------------------------------------------------------------------------------
# running both planners


def set_nnunet_env(monkeypatch, raw: Path, pre: Path) -> None:
    monkeypatch.setenv("nnUNet_raw", str(raw))
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    monkeypatch.setenv("nnUNet_results", str(pre.parent / "results"))


def nnunet_plan(monkeypatch, raw: Path, pre: Path, name: str, planner="default", **kwargs) -> dict:
    """Runs nnunetv2's planner class on ``pre/name/dataset_fingerprint.json``; returns the plans
    file it wrote, as JSON."""
    require("nnunetv2")
    import torch
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    set_nnunet_env(monkeypatch, raw, pre)
    cls = recursive_find_python_class(
        str(Path(nnunetv2.__path__[0]) / "experiment_planning"), NNUNET_CLASS[planner], "nnunetv2.experiment_planning"
    )
    if kwargs.get("overwrite_target_spacing") is not None:
        kwargs["overwrite_target_spacing"] = [float(s) for s in kwargs["overwrite_target_spacing"]]
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        p = cls(name, **kwargs)
        p.plan_experiment()
    return json.loads((pre / name / f"{p.plans_identifier}.json").read_text())


def nnunet_fingerprint(monkeypatch, raw: Path, pre: Path, name: str, num_processes: int = 1, intensity_samples: float = 1e6) -> dict:
    """nnunetv2's fingerprint. Planning reads only spacings, shapes and the crop ratio; the
    intensity statistics are copied through unchanged, so fewer intensity samples than nnU-Net's
    1e8 keep this quick without touching anything the planners compute from."""
    require("nnunetv2")
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor

    set_nnunet_env(monkeypatch, raw, pre)
    extractor = DatasetFingerprintExtractor(name, num_processes, verbose=False)
    extractor.num_foreground_voxels_for_intensitystats = intensity_samples
    return extractor.run(overwrite_existing=True)


def our_plan(raw: Path, pre: Path, name: str, fingerprint: dict | None = None, planner="default", **kwargs) -> dict:
    """Our plan_experiment; with ``fingerprint`` it is placed first so ours plans from the same one."""
    if fingerprint is not None:
        (pre / name).mkdir(parents=True, exist_ok=True)
        (pre / name / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plans = plan_experiment(name, resolve_paths(raw, pre, pre.parent / "results"), planner=planner, quiet=True, num_processes=1, **kwargs)
    on_disk = json.loads((pre / name / f"{plans['plans_name']}.json").read_text())
    assert on_disk == json.loads(json.dumps(plans))
    return on_disk


def assert_same_plans(ours: dict, theirs: dict) -> None:
    """Field by field first (readable failures), then the whole files."""
    assert ours["oxunet"]["artefact"] == "plans" and ours["oxunet"]["format_version"] == 1
    ours = {k: v for k, v in ours.items() if k != "oxunet"}
    assert list(ours["configurations"]) == list(theirs["configurations"]), "configurations planned"
    for key in ("dataset_name", "plans_name", "transpose_forward", "transpose_backward", "original_median_spacing_after_transp",
                "original_median_shape_after_transp", "image_reader_writer", "experiment_planner_used", "label_manager"):
        assert ours[key] == theirs[key], key
    for name, theirs_cfg in theirs["configurations"].items():
        cfg = ours["configurations"][name]
        for key in COMPARED_CONFIG_FIELDS:
            assert cfg.get(key) == theirs_cfg.get(key), f"{name}.{key}"
        if "architecture" in theirs_cfg:
            a, b = cfg["architecture"], theirs_cfg["architecture"]
            assert a["network_class_name"] == b["network_class_name"], f"{name}.network_class_name"
            for key in b["arch_kwargs"]:
                assert a["arch_kwargs"][key] == b["arch_kwargs"][key], f"{name}.arch_kwargs.{key}"
            assert a == b, f"{name}.architecture"
        assert cfg == theirs_cfg, name
    assert ours == theirs


# ---------------------------------------------------------------------------------------------
# constructed fingerprints: large images without large files


def stub_dataset(raw: Path, name: str, n_cases: int, channel_names=("CT",), labels=2, ending=".nii.gz") -> Path:
    """dataset.json plus one tiny case (both planners open an example image to pick the reader)."""
    ds = raw / name
    (ds / "imagesTr").mkdir(parents=True)
    (ds / "labelsTr").mkdir()
    arr = np.zeros((2, 3, 4), np.float32)
    for c in range(len(channel_names)):
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(ds / "imagesTr" / f"case_000_{c:04d}{ending}"))
    sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.uint8)), str(ds / "labelsTr" / f"case_000{ending}"))
    label_map = {"background": 0, **{f"l{i}": i for i in range(1, labels + 1)}}
    (ds / "dataset.json").write_text(json.dumps({
        "channel_names": {str(i): n for i, n in enumerate(channel_names)},
        "labels": label_map, "numTraining": n_cases, "file_ending": ending,
    }))
    return ds


def fingerprint(spacings, shapes, n_channels=1, relative_size=0.9) -> dict:
    stats = {"mean": 40.0, "median": 41.0, "std": 30.0, "min": -100.0, "max": 300.0, "percentile_99_5": 250.0, "percentile_00_5": -80.0}
    return {
        "spacings": [list(map(float, s)) for s in spacings],
        "shapes_after_crop": [list(map(int, s)) for s in shapes],
        "foreground_intensity_properties_per_channel": {str(c): dict(stats) for c in range(n_channels)},
        "median_relative_size_after_cropping": relative_size,
    }


def _cases(rng, n, spacing_choices, shape_lo, shape_hi):
    spacings = [[float(rng.choice(c)) for c in spacing_choices] for _ in range(n)]
    shapes = [[int(rng.integers(lo, hi + 1)) for lo, hi in zip(shape_lo, shape_hi)] for _ in range(n)]
    return spacings, shapes


def regime(name: str):
    """(fingerprint, channel_names, labels) of a planning regime."""
    rng = np.random.default_rng(REGIMES.index(name))
    if name == "aniso_ct":  # 5 mm slices, 0.7 mm in-plane, large in-plane: separate z pooling, cascade
        sp, sh = _cases(rng, 40, [(5.0,), (0.68, 0.7, 0.72, 0.78), (0.68, 0.7, 0.72, 0.78)], (40, 380, 380), (90, 512, 512))
        return fingerprint(sp, sh), ("CT",), 3
    if name == "aniso_rule":  # mixed thick slices: target z = 10th percentile, not the median
        sp, sh = _cases(rng, 30, [(2.5, 3.0, 5.0, 6.0, 8.0), (0.8, 0.9), (0.8, 0.9)], (20, 256, 256), (40, 320, 320))
        return fingerprint(sp, sh, 2, relative_size=0.6), ("T2", "ADC"), 2
    if name == "iso_large":  # 1 mm isotropic, ~300^3: lowres + cascade, many spacing steps
        sp, sh = _cases(rng, 25, [(1.0,), (1.0,), (1.0,)], (250, 260, 240), (330, 340, 320))
        return fingerprint(sp, sh), ("CT",), 5
    if name == "iso_small":  # Hippocampus-like: one 3D config, large batches from the 5 % cap
        sp, sh = _cases(rng, 50, [(1.0,), (1.0,), (1.0,)], (30, 44, 28), (42, 58, 42))
        return fingerprint(sp, sh), ("MRI",), 2
    if name == "two_d":  # natural images: pseudo-3D with 999 spacing; 2d only
        sp, sh = _cases(rng, 60, [(999.0,), (1.0,), (1.0,)], (1, 400, 500), (1, 800, 900))
        return fingerprint(sp, sh, 3), ("R", "G", "B"), 1
    if name == "multichannel_mask":  # brain-MRI-like: zscore with mask, noNorm and rescale channels; x.5 medians
        sp, sh = _cases(rng, 20, [(1.0,), (1.0,), (1.0, 1.2)], (130, 160, 120), (150, 190, 150))
        return fingerprint(sp, sh, 4, relative_size=0.5), ("FLAIR", "noNorm", "rescale_to_0_1", "T1"), 3
    if name == "transposed":  # coarse axis last in array order: transpose_forward = [2, 0, 1]
        sp, sh = _cases(rng, 16, [(0.9, 1.0), (0.9, 1.0), (4.0, 4.5)], (200, 220, 30), (260, 260, 50))
        return fingerprint(sp, sh), ("CT",), 2
    raise KeyError(name)


REGIMES = ("aniso_ct", "aniso_rule", "iso_large", "iso_small", "two_d", "multichannel_mask", "transposed")


def run_both(tmp_path, monkeypatch, regime_name, planner="default", ours_kwargs=None, theirs_kwargs=None, dataset_id=300):
    fp, channels, labels = regime(regime_name)
    name = f"Dataset{dataset_id}_{regime_name}"
    raw = tmp_path / "raw"
    stub_dataset(raw, name, len(fp["spacings"]), channels, labels)
    theirs_pre, ours_pre = tmp_path / "pre_nnunet", tmp_path / "pre_ours"
    (theirs_pre / name).mkdir(parents=True)
    (theirs_pre / name / "dataset_fingerprint.json").write_text(json.dumps(fp))
    theirs = nnunet_plan(monkeypatch, raw, theirs_pre, name, planner, **(theirs_kwargs or {}))
    ours = our_plan(raw, ours_pre, name, fp, planner, **(ours_kwargs or {}))
    return ours, theirs


@pytest.mark.parametrize("regime_name", REGIMES)
def test_default_planner_matches_nnunet(tmp_path, monkeypatch, regime_name):
    ours, theirs = run_both(tmp_path, monkeypatch, regime_name)
    assert_same_plans(ours, theirs)
    configs = set(ours["configurations"])
    # the regimes really are different regimes
    expected = {
        "aniso_ct": {"2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"},
        "iso_large": {"2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"},
        "two_d": {"2d"},
        "iso_small": {"2d", "3d_fullres"},
    }
    if regime_name in expected:
        assert configs == expected[regime_name]
    if regime_name == "transposed":
        assert ours["transpose_forward"] == [2, 0, 1] and ours["transpose_backward"] == [1, 2, 0]
    if regime_name == "aniso_rule":
        assert ours["configurations"]["3d_fullres"]["use_mask_for_norm"] == [True, True]
        z = ours["configurations"]["3d_fullres"]["spacing"][0]
        assert z < float(np.median(regime("aniso_rule")[0]["spacings"], 0)[0])  # the 10th-percentile rule fired
    if regime_name == "multichannel_mask":
        cfg = ours["configurations"]["3d_fullres"]
        assert cfg["normalization_schemes"] == ["ZScoreNormalization", "NoNormalization", "RescaleTo01Normalization", "ZScoreNormalization"]
        assert cfg["use_mask_for_norm"] == [True, False, False, True]


@pytest.mark.parametrize("planner", ["ResEncM", "ResEncL", "ResEncXL", "ResEnc"])
@pytest.mark.parametrize("regime_name", ["aniso_ct", "iso_small"])
def test_resenc_presets_match_nnunet(tmp_path, monkeypatch, planner, regime_name):
    ours, theirs = run_both(tmp_path, monkeypatch, regime_name, planner)
    assert_same_plans(ours, theirs)
    fullres = ours["configurations"]["3d_fullres"]
    assert fullres["architecture"]["network_class_name"].endswith("ResidualEncoderUNet")
    assert fullres["data_identifier"] == "nnUNetPlans_3d_fullres"  # shares the default planner's data


@pytest.mark.parametrize("regime_name", ["iso_large", "two_d"])
def test_resenc_l_on_more_regimes(tmp_path, monkeypatch, regime_name):
    ours, theirs = run_both(tmp_path, monkeypatch, regime_name, "ResEncL")
    assert_same_plans(ours, theirs)


@pytest.mark.parametrize("gpu", [4, 12, 40])
def test_gpu_memory_target_matches_nnunet(tmp_path, monkeypatch, gpu):
    ours, theirs = run_both(tmp_path, monkeypatch, "aniso_ct", ours_kwargs={"gpu_memory_gb": gpu},
                            theirs_kwargs={"gpu_memory_target_in_gb": gpu})
    assert_same_plans(ours, theirs)


def test_gpu_memory_target_on_a_preset_matches_nnunet(tmp_path, monkeypatch):
    ours, theirs = run_both(tmp_path, monkeypatch, "iso_large", "ResEncM", {"gpu_memory_gb": 16}, {"gpu_memory_target_in_gb": 16})
    assert_same_plans(ours, theirs)


@pytest.mark.parametrize("target", [(2.0, 0.5, 0.5), (1.0, 1.0, 3.0)])
def test_overwrite_target_spacing_matches_nnunet(tmp_path, monkeypatch, target):
    ours, theirs = run_both(tmp_path, monkeypatch, "aniso_ct", ours_kwargs={"overwrite_target_spacing": target},
                            theirs_kwargs={"overwrite_target_spacing": target})
    assert_same_plans(ours, theirs)
    fwd = ours["transpose_forward"]
    assert ours["configurations"]["3d_fullres"]["spacing"] == [target[i] for i in fwd]


def test_plans_name_override_matches_nnunet(tmp_path, monkeypatch):
    ours, theirs = run_both(tmp_path, monkeypatch, "aniso_ct", "ResEncM", {"plans_name": "MyPlans"}, {"plans_name": "MyPlans"})
    assert_same_plans(ours, theirs)
    ids = {c: v.get("data_identifier") for c, v in ours["configurations"].items()}
    assert ids == {"2d": "nnUNetPlans_2d", "3d_fullres": "nnUNetPlans_3d_fullres", "3d_lowres": "MyPlans_3d_lowres", "3d_cascade_fullres": None}


# ---------------------------------------------------------------------------------------------
# real files: fingerprints extracted by nnunetv2 from synthetic datasets and Hippocampus


def _files_parity(tmp_path, monkeypatch, name, make, ours_kwargs=None, theirs_kwargs=None):
    raw = tmp_path / "raw"
    make(raw / name)
    theirs_pre, ours_pre = tmp_path / "pre_nnunet", tmp_path / "pre_ours"
    fp = nnunet_fingerprint(monkeypatch, raw, theirs_pre, name)
    theirs = nnunet_plan(monkeypatch, raw, theirs_pre, name, **(theirs_kwargs or {}))
    ours = our_plan(raw, ours_pre, name, json.loads(json.dumps(fp)), **(ours_kwargs or {}))
    assert_same_plans(ours, theirs)
    return ours


def test_files_anisotropic_ct(tmp_path, monkeypatch):
    ours = _files_parity(tmp_path, monkeypatch, "Dataset311_AnisoCT", lambda d: make_dataset(
        d, shapes=[(14, 224, 240), (18, 240, 224), (12, 256, 256)],
        spacings=[(5.0, 0.7, 0.7), (5.0, 0.72, 0.72), (4.0, 0.68, 0.68)], seed=1))
    strides = ours["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["strides"]
    assert strides[1][0] == 1 and strides[1][1:] == [2, 2]  # the thick axis is not pooled at first


def test_files_isotropic_with_cascade(tmp_path, monkeypatch):
    ours = _files_parity(tmp_path, monkeypatch, "Dataset312_Iso", lambda d: make_dataset(
        d, shapes=[(96, 96, 96), (100, 90, 96), (92, 100, 88)], spacings=[(1.0, 1.0, 1.0)] * 3, seed=2),
        {"gpu_memory_gb": 0.25}, {"gpu_memory_target_in_gb": 0.25})
    assert "3d_cascade_fullres" in ours["configurations"] and ours["configurations"]["3d_fullres"]["batch_dice"] is True


def test_files_2d_png(tmp_path, monkeypatch):
    ours = _files_parity(tmp_path, monkeypatch, "Dataset313_Png", lambda d: make_2d_dataset(
        d, shapes=[(120, 160), (128, 150), (110, 170), (125, 140)]))
    assert list(ours["configurations"]) == ["2d"] and ours["image_reader_writer"] == "NaturalImage2DIO"


@pytest.fixture(scope="module")
def hippocampus_subset_fingerprint(tmp_path_factory):
    if HIPPOCAMPUS is None:
        pytest.skip(NO_HIPPOCAMPUS)
    root = tmp_path_factory.mktemp("hippo")
    raw = root / "raw"
    copy_dataset_subset(HIPPOCAMPUS, raw / "Dataset004_Hippocampus", 24)
    with pytest.MonkeyPatch.context() as mp:  # nnU-Net's full 1e8 intensity samples: compared end to end below
        fp = nnunet_fingerprint(mp, raw, root / "pre_nnunet", "Dataset004_Hippocampus", intensity_samples=10e7)
    return root, fp


@pytest.mark.parametrize("planner", ["default", "ResEncM"])
def test_hippocampus_subset_matches_nnunet(hippocampus_subset_fingerprint, tmp_path, monkeypatch, planner):
    root, fp = hippocampus_subset_fingerprint
    raw = root / "raw"
    theirs = nnunet_plan(monkeypatch, raw, root / "pre_nnunet", "Dataset004_Hippocampus", planner)
    ours = our_plan(raw, tmp_path / "pre_ours", "Dataset004_Hippocampus", json.loads(json.dumps(fp)), planner)
    assert_same_plans(ours, theirs)


def test_hippocampus_subset_with_our_own_fingerprint(hippocampus_subset_fingerprint, tmp_path, monkeypatch):
    """End to end: our fingerprint extraction + our planner == nnunetv2 extraction + planner."""
    root, _ = hippocampus_subset_fingerprint
    raw = root / "raw"
    theirs = nnunet_plan(monkeypatch, raw, root / "pre_nnunet", "Dataset004_Hippocampus")
    ours = our_plan(raw, tmp_path / "pre_ours", "Dataset004_Hippocampus")
    assert_same_plans(ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("planner", ["default", "ResEncM", "ResEncL"])
def test_full_hippocampus_matches_nnunet(tmp_path_factory, monkeypatch, planner):
    if HIPPOCAMPUS is None:
        pytest.skip(NO_HIPPOCAMPUS)
    root = tmp_path_factory.getbasetemp() / "hippo_full"
    raw = HIPPOCAMPUS.parent
    fp_file = root / "pre_nnunet" / "Dataset004_Hippocampus" / "dataset_fingerprint.json"
    if not fp_file.is_file():  # extracted once for the three presets
        nnunet_fingerprint(monkeypatch, raw, root / "pre_nnunet", "Dataset004_Hippocampus", num_processes=2, intensity_samples=10e7)
    fp = json.loads(fp_file.read_text())
    theirs = nnunet_plan(monkeypatch, raw, root / "pre_nnunet", "Dataset004_Hippocampus", planner)
    ours = our_plan(raw, root / f"pre_ours_{planner}", "Dataset004_Hippocampus", fp, planner)
    assert_same_plans(ours, theirs)
    if planner == "default":  # nnU-Net's published Hippocampus plans
        assert ours["configurations"]["3d_fullres"]["patch_size"] == [40, 56, 40]
        assert list(ours["configurations"]) == ["2d", "3d_fullres"]
