"""Model sharing: export/install round trip, zip-slip refused, nnU-Net's zips install with ours
(and ours with nnU-Net's), move-plans equals nnU-Net's move_plans_between_datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from peers import require
from synthetic import make_dataset

from oxunet.cli import main
from oxunet.dataset import resolve_paths
from oxunet.sharing import ModelSharingError, export_model, install_model, move_plans

DATASET = "Dataset901_Share"
MODEL = "nnUNetTrainer__nnUNetPlans__3d_fullres"


def _fake_model(results: Path, folds=(0, 1), config="3d_fullres") -> Path:
    """A results folder with the files a trained fold leaves (checkpoint contents are opaque bytes)."""
    model = results / DATASET / f"nnUNetTrainer__nnUNetPlans__{config}"
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        (model).mkdir(parents=True, exist_ok=True)
        (model / name).write_text(json.dumps({"file": name}))
    for f in folds:
        fold = model / f"fold_{f}"
        (fold / "validation").mkdir(parents=True)
        (fold / "checkpoint_final.pth").write_bytes(os.urandom(2048))
        (fold / "checkpoint_best.pth").write_bytes(os.urandom(64))
        (fold / "debug.json").write_text("{}")
        (fold / "progress.png").write_bytes(b"\x89PNG fake")
        (fold / "validation" / "summary.json").write_text('{"foreground_mean": {"Dice": 0.8}}')
        (fold / "validation" / "case_000.nii.gz").write_bytes(b"pred")
    return model


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_export_install_round_trip(tmp_path):
    src = tmp_path / "results"
    _fake_model(src)
    _fake_model(src, config="2d")
    names = export_model(901, tmp_path / "m.zip", resolve_paths(results_dir=src), folds=[0, 1])  # the trained configurations
    assert f"{DATASET}/{MODEL}/fold_1/checkpoint_final.pth" in names
    assert f"{DATASET}/{MODEL}/fold_0/validation/summary.json" in names
    assert not any(n.endswith("case_000.nii.gz") or "checkpoint_best" in n for n in names)
    dst = tmp_path / "installed"
    models = install_model(tmp_path / "m.zip", resolve_paths(results_dir=dst))
    assert [m.relative_to(dst).as_posix() for m in models] == [f"{DATASET}/nnUNetTrainer__nnUNetPlans__2d", f"{DATASET}/{MODEL}"]
    expected = {k: v for k, v in _tree(src).items() if k in names}
    assert _tree(dst) == expected and len(expected) == len(names)


def test_export_strictness_and_choices(tmp_path):
    src = tmp_path / "results"
    _fake_model(src, folds=(0,))
    paths = resolve_paths(results_dir=src)
    with pytest.raises(ModelSharingError, match=r"fold_1: checkpoint_final.pth missing"):
        export_model(DATASET, tmp_path / "a.zip", paths, configurations=["3d_fullres"], folds=[0, 1])
    with pytest.raises(ModelSharingError, match="configuration '2d'"):
        export_model(DATASET, tmp_path / "a.zip", paths, configurations=["2d", "3d_fullres"], folds=[0])
    assert not (tmp_path / "a.zip").exists()
    names = export_model(DATASET, tmp_path / "b.zip", paths, configurations=["2d", "3d_fullres"], folds=[0, 1],
                         checkpoints=["checkpoint_final.pth", "checkpoint_best.pth"], strict=False,
                         include_validation=False)
    assert sorted(n.split("/", 2)[2] for n in names) == sorted([
        "fold_0/checkpoint_final.pth", "fold_0/checkpoint_best.pth", "fold_0/debug.json", "fold_0/progress.png",
        "plans.json", "dataset.json", "dataset_fingerprint.json"])
    cv = export_model(DATASET, tmp_path / "c.zip", paths, folds=[0], crossval_predictions=True)
    assert f"{DATASET}/{MODEL}/fold_0/validation/case_000.nii.gz" in cv


def _evil_zip(path: Path, name: str, link: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{DATASET}/{MODEL}/plans.json", "{}")
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd" if link else "pwned")
    return path


@pytest.mark.parametrize("name,link", [
    ("../evil.txt", False), (f"{DATASET}/../../evil.txt", False), ("/tmp/evil.txt", False),
    ("C:/evil.txt", False), ("..\\evil.txt", False), (f"{DATASET}/{MODEL}/fold_0/link", True), ("evil.txt", False),
])
def test_zip_slip_is_refused_before_writing(tmp_path, name, link):
    zpath = _evil_zip(tmp_path / "evil.zip", name, link)
    results = tmp_path / "results"
    with pytest.raises(ModelSharingError, match="refusing to install.*" + name.split("/")[-1].split("\\")[-1].replace(".", r"\.")):
        install_model(zpath, resolve_paths(results_dir=results))
    assert not results.exists() or not any(results.rglob("*"))
    assert not (tmp_path / "evil.txt").exists()


def test_install_refuses_to_overwrite_different_files(tmp_path):
    src = tmp_path / "results"
    _fake_model(src, folds=(0,))
    export_model(DATASET, tmp_path / "m.zip", resolve_paths(results_dir=src), folds=[0])
    install_model(tmp_path / "m.zip", resolve_paths(results_dir=src))  # same content: fine
    (src / DATASET / MODEL / "plans.json").write_text("{}")
    with pytest.raises(ModelSharingError, match="--overwrite"):
        install_model(tmp_path / "m.zip", resolve_paths(results_dir=src))
    install_model(tmp_path / "m.zip", resolve_paths(results_dir=src), overwrite=True)
    assert json.loads((src / DATASET / MODEL / "plans.json").read_text()) == {"file": "plans.json"}


def test_cli_export_install_and_bad_zip(tmp_path):
    src, dst = tmp_path / "results", tmp_path / "other"
    _fake_model(src)
    r = CliRunner().invoke(main, ["export-model", "-d", "901", "-o", str(tmp_path / "m.zip"), "-c", "3d_fullres",
                                  "-f", "0", "1", "--results-dir", str(src)])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(tmp_path / "m.zip")
    r = CliRunner().invoke(main, ["install-model", str(tmp_path / "m.zip"), "--results-dir", str(dst)])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(dst / DATASET / MODEL)
    (tmp_path / "bad.zip").write_text("not a zip")
    r = CliRunner().invoke(main, ["install-model", str(tmp_path / "bad.zip"), "--results-dir", str(dst)])
    assert r.exit_code == 1 and "not a zip file" in r.output


def _run_nnunet(code: str, env: dict) -> None:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_nnunet_zip_installs_with_ours_and_ours_with_nnunet(tmp_path):
    require("nnunetv2")
    src = tmp_path / "results"
    _fake_model(src)
    _run_nnunet(f"""
        from nnunetv2.model_sharing.model_export import export_pretrained_model
        export_pretrained_model("{DATASET}", r"{tmp_path / 'nn.zip'}", configurations=("3d_fullres",), folds=(0, 1))
    """, {"nnUNet_results": str(src), "nnUNet_raw": str(tmp_path), "nnUNet_preprocessed": str(tmp_path)})
    ours = tmp_path / "ours"
    install_model(tmp_path / "nn.zip", resolve_paths(results_dir=ours))
    with zipfile.ZipFile(tmp_path / "nn.zip") as zf:
        nn_names = sorted(zf.namelist())
    assert sorted(_tree(ours)) == nn_names and _tree(ours) == {k: v for k, v in _tree(src).items() if k in nn_names}
    # and the zip we write installs with nnU-Net's own installer, holding what nnU-Net's export holds
    export_model(DATASET, tmp_path / "ox.zip", resolve_paths(results_dir=src), configurations=["3d_fullres"], folds=[0, 1])
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    _run_nnunet(f"""
        from nnunetv2.model_sharing.model_import import install_model_from_zip_file
        install_model_from_zip_file(r"{tmp_path / 'ox.zip'}")
    """, {"nnUNet_results": str(theirs), "nnUNet_raw": str(tmp_path), "nnUNet_preprocessed": str(tmp_path)})
    assert _tree(theirs) == _tree(ours)


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """Raw Dataset910 (planned) and Dataset911 (raw only, .nrrd files); preprocessed roots for both tools."""
    from oxunet.planning import plan_experiment

    tmp_path = tmp_path_factory.mktemp("planned")
    raw = tmp_path / "raw"
    make_dataset(raw / "Dataset910_Src", [(20, 24, 24)] * 3, [(2.0, 1.0, 1.0)] * 3)
    make_dataset(raw / "Dataset911_Tgt", [(16, 20, 20)] * 2, [(1.0, 1.0, 1.0)] * 2, ending=".nrrd", seed=3)
    ours = tmp_path / "pre_ours"
    plan_experiment(910, resolve_paths(raw_dir=raw, preprocessed_dir=ours), num_processes=1, quiet=True)
    theirs = tmp_path / "pre_nnunet"
    (theirs / "Dataset911_Tgt").mkdir(parents=True)  # nnU-Net's save_json expects the folder
    import shutil

    shutil.copytree(ours / "Dataset910_Src", theirs / "Dataset910_Src")
    return raw, ours, theirs


@pytest.mark.parametrize("target_plans", [None, "nnUNetPlans_pretrained"])
def test_move_plans_equals_nnunet(planned, target_plans):
    require("nnunetv2")
    raw, ours, theirs = planned
    out = move_plans(910, 911, "nnUNetPlans", resolve_paths(raw_dir=raw, preprocessed_dir=ours), target_plans)
    tp = repr(target_plans)
    _run_nnunet(f"""
        from nnunetv2.experiment_planning.plans_for_pretraining.move_plans_between_datasets import move_plans_between_datasets
        move_plans_between_datasets(910, 911, "nnUNetPlans", {tp})
    """, {"nnUNet_raw": str(raw), "nnUNet_preprocessed": str(theirs), "nnUNet_results": str(raw)})
    name = f"{target_plans or 'nnUNetPlans'}.json"
    assert out == ours / "Dataset911_Tgt" / name
    mine, nn = json.loads(out.read_text()), json.loads((theirs / "Dataset911_Tgt" / name).read_text())
    assert mine == nn and list(mine) == list(nn)
    assert mine["dataset_name"] == "Dataset911_Tgt" and mine["image_reader_writer"] == "SimpleITKIO"
    if target_plans:
        assert all(c["data_identifier"].startswith(target_plans + "_") for c in mine["configurations"].values()
                   if "data_identifier" in c)


def test_move_plans_errors_and_cli(planned):
    raw, ours, _ = planned
    paths = resolve_paths(raw_dir=raw, preprocessed_dir=ours)
    with pytest.raises(ModelSharingError, match="source plans not found"):
        move_plans(910, 911, "NoSuchPlans", paths)
    with pytest.raises(ModelSharingError, match="source and target plans are the same file"):
        move_plans(910, 910, "nnUNetPlans", paths)
    two = make_dataset(raw / "Dataset912_TwoCh", [(16, 20, 20)] * 2, [(1.0, 1.0, 1.0)] * 2, channel_names=("CT", "CT"))
    with pytest.raises(ModelSharingError, match=r"normalizes 1 channel\(s\) but .*declares 2"):
        move_plans(910, 912, "nnUNetPlans", paths)
    assert two.is_dir()
    r = CliRunner().invoke(main, ["move-plans", "-s", "910", "-t", "911", "-sp", "nnUNetPlans", "-tp", "P2",
                                  "--raw-dir", str(raw), "--preprocessed-dir", str(ours)])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(ours / "Dataset911_Tgt" / "P2.json")
