"""The dataset driver: layout, parity of the stored cases, resume, interrupted runs, errors, CLI."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import shutil

import numpy as np
import pytest

from oxunet.dataset import resolve_paths
from oxunet.preprocessing import PreprocessingError, compute_new_shape, list_cases, open_case, preprocess_case, storage
from oxunet.preprocessing import run as run_module
from oxunet.preprocessing.run import preprocess_dataset
from synthetic import make_dataset
from test_preprocess import (
    CT_SHAPES,
    CT_SPACINGS,
    add_test_configurations,
    assert_same_as_nnunet,
    nnunet_plans,
    nnunet_run_case,
    raw_cases,
    save_plans,
)

NAME = "Dataset201_CT"


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    root = tmp_path_factory.mktemp("planned")
    make_dataset(root / "raw" / NAME, shapes=CT_SHAPES, spacings=CT_SPACINGS)
    plans = add_test_configurations(nnunet_plans(root / "raw", root / "pre", NAME))
    save_plans(root / "pre", NAME, plans)
    return root


@pytest.fixture
def roots(planned, tmp_path):
    """A fresh copy of the raw dataset and of the plans (nothing preprocessed yet)."""
    shutil.copytree(planned / "raw", tmp_path / "raw")
    (tmp_path / "pre" / NAME).mkdir(parents=True)
    for f in ("nnUNetPlans.json", "dataset.json", "dataset_fingerprint.json"):
        shutil.copy(planned / "pre" / NAME / f, tmp_path / "pre" / NAME / f)
    return tmp_path


def _paths(roots):
    return resolve_paths(raw_dir=roots / "raw", preprocessed_dir=roots / "pre", environ={})


def _plans(roots):
    return json.loads((roots / "pre" / NAME / "nnUNetPlans.json").read_text())


def _case_names():
    return [f"case_{i:03d}" for i in range(len(CT_SHAPES))]


def test_stores_every_configuration_like_nnunet(roots):
    reports = preprocess_dataset(201, _paths(roots), configurations=("3d_fullres", "2d", "3d_lowres", "3d_nope"),
                                 num_processes=2, quiet=True)
    assert reports["3d_nope"].skipped_reason == "configuration '3d_nope' is not in nnUNetPlans.json"
    plans = _plans(roots)
    raw = roots / "raw" / NAME
    dataset_json = json.loads((raw / "dataset.json").read_text())
    for configuration in ("3d_fullres", "2d", "3d_lowres"):
        report = reports[configuration]
        folder = roots / "pre" / NAME / plans["configurations"][configuration]["data_identifier"]
        assert report.folder == folder and report.processed == _case_names() and report.kept == []
        assert list_cases(folder) == _case_names()
        for case, (images, label) in raw_cases(raw).items():
            h = open_case(folder, case)
            props = dict(h.properties, class_locations={k: np.pad(v, ((0, 0), (1, 0))) for k, v in h.class_locations.items()})
            theirs = nnunet_run_case(images, label, plans, configuration, dataset_json)
            assert_same_as_nnunet((np.asarray(h.data), np.asarray(h.seg), props), theirs, f"{configuration}/{case}")
            if configuration == "3d_fullres":  # and exactly what the per-case function returns
                d, s, p = preprocess_case(images, label, None, plans, configuration, dataset_json)
                np.testing.assert_array_equal(h.data, d)
                np.testing.assert_array_equal(h.seg, s)
                for k, v in p["class_locations"].items():
                    np.testing.assert_array_equal(h.class_locations[k], v[:, 1:])
    gt = roots / "pre" / NAME / "gt_segmentations"
    assert sorted(p.name for p in gt.iterdir()) == [f"{c}.nii.gz" for c in _case_names()]
    for c in _case_names():
        assert (gt / f"{c}.nii.gz").read_bytes() == (raw / "labelsTr" / f"{c}.nii.gz").read_bytes()


def test_rerun_redoes_only_what_is_missing_stale_or_broken(roots):
    paths = _paths(roots)
    folder = roots / "pre" / NAME / "nnUNetPlans_3d_fullres"
    first = preprocess_dataset(NAME, paths, configurations=["3d_fullres"], num_processes=2, quiet=True)
    assert first["3d_fullres"].processed == _case_names()

    (folder / "case_001.case.json").unlink()  # never finished
    with open(folder / "case_002.data.npy", "r+b") as f:  # truncated
        f.truncate(100)
    (folder / ".case_004.seg.tmp-12345.npy").write_bytes(b"half")  # a dead writer's temporary
    image = roots / "raw" / NAME / "imagesTr" / "case_003_0000.nii.gz"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))  # input changed

    second = preprocess_dataset(NAME, paths, configurations=["3d_fullres"], num_processes=2, quiet=True)["3d_fullres"]
    assert second.processed == ["case_001", "case_002", "case_003"]
    assert second.kept == ["case_000", "case_004"]
    assert not any(".tmp-" in p.name for p in folder.iterdir())
    assert list_cases(folder) == _case_names()

    third = preprocess_dataset(NAME, paths, configurations=["3d_fullres"], num_processes=1, quiet=True)["3d_fullres"]
    assert third.processed == [] and third.kept == _case_names()

    plans = _plans(roots)  # re-planned with another spacing: nothing can be kept
    plans["configurations"]["3d_fullres"]["spacing"] = [4.0, 0.9, 0.9]
    save_plans(roots / "pre", NAME, plans)
    fourth = preprocess_dataset(NAME, paths, configurations=["3d_fullres"], num_processes=1, quiet=True)["3d_fullres"]
    assert fourth.processed == _case_names()
    h = open_case(folder, "case_000")
    cropped = h.properties["shape_after_cropping_and_before_resampling"]
    assert list(h.shape) == compute_new_shape(cropped, CT_SPACINGS[0], [4.0, 0.9, 0.9])

    fifth = preprocess_dataset(NAME, paths, configurations=["3d_fullres"], num_processes=1, clean=True, quiet=True)
    assert fifth["3d_fullres"].processed == _case_names()


def _run_and_die(roots, after_writes):
    """Child process: preprocess with one process and die (like SIGKILL) after some array writes."""
    calls = {"n": 0}
    real = storage._write_npy

    def write(path, array):
        offset = real(path, array)
        calls["n"] += 1
        if calls["n"] == after_writes:
            os._exit(9)
        return offset

    storage._write_npy = write
    preprocess_dataset(NAME, _paths(roots), configurations=["3d_fullres"], num_processes=1, quiet=True)


def test_killed_run_leaves_no_half_case_and_resumes(roots):
    # 3 arrays per case: dying after the 5th write is in the middle of the second case
    p = multiprocessing.get_context("fork").Process(target=_run_and_die, args=(roots, 5))
    p.start()
    p.join()
    assert p.exitcode == 9
    folder = roots / "pre" / NAME / "nnUNetPlans_3d_fullres"
    assert list_cases(folder) == ["case_000"]
    assert not storage.case_is_complete(folder, "case_001")
    report = preprocess_dataset(NAME, _paths(roots), configurations=["3d_fullres"], num_processes=2, quiet=True)["3d_fullres"]
    assert report.kept == ["case_000"] and report.processed == _case_names()[1:]
    assert list_cases(folder) == _case_names()


def test_bad_case_is_named_and_the_others_are_stored(roots):
    bad = roots / "raw" / NAME / "imagesTr" / "case_002_0000.nii.gz"
    good = bad.read_bytes()
    bad.write_bytes(b"this is not a NIfTI file")
    with pytest.raises(PreprocessingError, match=r"(?s)1 of 5 case\(s\) failed.*case_002_0000.nii.gz"):
        preprocess_dataset(NAME, _paths(roots), configurations=["3d_fullres"], num_processes=2, quiet=True)
    folder = roots / "pre" / NAME / "nnUNetPlans_3d_fullres"
    assert list_cases(folder) == ["case_000", "case_001", "case_003", "case_004"]
    bad.write_bytes(good)
    report = preprocess_dataset(NAME, _paths(roots), configurations=["3d_fullres"], num_processes=2, quiet=True)
    assert report["3d_fullres"].processed == ["case_002"]


def test_dead_worker_is_reported(roots, monkeypatch):
    real = run_module._process_one

    def die_on_case_3(case, *args):
        if case == "case_003":
            os._exit(9)  # as if killed for memory
        return real(case, *args)

    monkeypatch.setattr(run_module, "_process_one", die_on_case_3)
    with pytest.raises(PreprocessingError, match="worker process died.*fewer processes"):
        preprocess_dataset(NAME, _paths(roots), configurations=["3d_fullres"], num_processes=2, quiet=True)


def test_input_and_argument_errors(roots):
    paths = _paths(roots)
    (roots / "raw" / NAME / "labelsTr" / "case_004.nii.gz").unlink()
    with pytest.raises(PreprocessingError, match="no label file for case.*case_004"):
        preprocess_dataset(NAME, paths, configurations=["3d_fullres"], quiet=True)
    with pytest.raises(FileNotFoundError, match="OtherPlans.json: plans not found"):
        preprocess_dataset(NAME, paths, plans_name="OtherPlans", quiet=True)
    with pytest.raises(ValueError, match="one value or one per configuration"):
        preprocess_dataset(NAME, paths, configurations=["2d", "3d_fullres"], num_processes=[1, 2, 3], quiet=True)
    with pytest.raises(LookupError, match="dataset 999"):
        preprocess_dataset(999, paths, quiet=True)


def test_num_processes_defaults_follow_nnunet():
    f = run_module._num_processes_per_configuration
    assert f(["2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"], None) == [8, 4, 8, 4]
    assert f(["2d", "3d_fullres"], 3) == [3, 3]
    assert f(["2d", "3d_fullres"], [2]) == [2, 2]
    assert f(["2d", "3d_fullres"], (2, 5)) == [2, 5]
    with pytest.raises(ValueError, match=">= 1"):
        f(["2d"], 0)


def test_cli(roots):
    from click.testing import CliRunner

    from oxunet.cli.preprocess import preprocess

    args = ["-d", "201", "-c", "3d_fullres", "3d_nope", "-np", "2", "1", "--raw-dir", str(roots / "raw"),
            "--preprocessed-dir", str(roots / "pre")]
    result = CliRunner().invoke(preprocess, args)
    assert result.exit_code == 0, result.output
    assert "'3d_nope' is not in nnUNetPlans.json" in result.output
    assert "201 3d_fullres: 5 case(s) preprocessed, 0 kept" in result.output
    assert list_cases(roots / "pre" / NAME / "nnUNetPlans_3d_fullres") == _case_names()
    again = CliRunner().invoke(preprocess, [*args[:4], "--plans-name", "nnUNetPlans", *args[8:], "-q"])
    assert again.exit_code == 0 and again.output == ""
    bad = CliRunner().invoke(preprocess, ["-d", "999", *args[8:]])
    assert bad.exit_code == 1 and "dataset 999" in bad.output
    mismatch = CliRunner().invoke(preprocess, ["-d", "201", "-c", "2d", "3d_fullres", "-np", "1", "2", "3", *args[8:]])
    assert mismatch.exit_code == 1 and "one value or one per configuration" in mismatch.output


def test_preprocessing_and_its_cli_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, oxunet.preprocessing; from oxunet.cli import main; "
            "from click.testing import CliRunner; "
            "r = CliRunner().invoke(main, ['preprocess', '--help']); "
            "print('torch' in sys.modules, r.exit_code, '-np 8 4 8' in r.output)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "0", "True"]
