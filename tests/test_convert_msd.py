"""convert-msd: 4D MSD tasks into the raw layout, same result as nnunetv2's converter."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from oxunet.dataset import resolve_paths
from oxunet.dataset.convert_msd import ConversionError, convert_msd
from peers import require


def _msd_task(root, n=2):
    task = root / "Task05_Prostate"
    for sub in ("imagesTr", "imagesTs", "labelsTr"):
        (task / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.random((2, 5, 6, 7)).astype(np.float32)  # 2 channels
        img = sitk.GetImageFromArray(arr, isVector=False)
        img.SetSpacing((0.6, 0.6, 3.6, 1.0))
        img.SetOrigin((1.0, 2.0, 3.0, 0.0))
        sitk.WriteImage(img, str(task / "imagesTr" / f"prostate_{i:02d}.nii.gz"))
        lab = sitk.GetImageFromArray(rng.integers(0, 3, (5, 6, 7)).astype(np.uint8))
        lab.SetSpacing((0.6, 0.6, 3.6))
        sitk.WriteImage(lab, str(task / "labelsTr" / f"prostate_{i:02d}.nii.gz"))
    sitk.WriteImage(img, str(task / "imagesTs" / "prostate_99.nii.gz"))
    (task / "imagesTr" / "._prostate_00.nii.gz").write_bytes(b"resource fork")
    (task / "dataset.json").write_text(json.dumps({
        "name": "PROSTATE", "modality": {"0": "T2", "1": "ADC"},
        "labels": {"0": "background", "1": "PZ", "2": "TZ"}, "numTraining": n, "numTest": 1,
        "training": [], "test": [],
    }))
    return task


def test_convert_msd_splits_channels_and_converts_json(tmp_path):
    task = _msd_task(tmp_path / "msd")
    out = convert_msd(task, resolve_paths(raw_dir=tmp_path / "raw", environ={}), num_processes=1, quiet=True)
    assert out.name == "Dataset005_Prostate"
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [
        "prostate_00_0000.nii.gz", "prostate_00_0001.nii.gz", "prostate_01_0000.nii.gz", "prostate_01_0001.nii.gz"]
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == ["prostate_99_0000.nii.gz", "prostate_99_0001.nii.gz"]
    ch1 = sitk.ReadImage(str(out / "imagesTr" / "prostate_00_0001.nii.gz"))
    src = sitk.GetArrayFromImage(sitk.ReadImage(str(task / "imagesTr" / "prostate_00.nii.gz")))
    assert np.array_equal(sitk.GetArrayFromImage(ch1), src[1])
    assert ch1.GetSpacing() == pytest.approx((0.6, 0.6, 3.6)) and ch1.GetOrigin() == pytest.approx((1.0, 2.0, 3.0))
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "T2", "1": "ADC"}
    assert ds["labels"] == {"background": 0, "PZ": 1, "TZ": 2}
    assert ds["numTraining"] == 2 and ds["file_ending"] == ".nii.gz" and "training" not in ds


def test_convert_msd_same_as_nnunet(tmp_path, monkeypatch):
    require("nnunetv2")
    from nnunetv2.dataset_conversion.convert_MSD_dataset import convert_msd_dataset

    task = _msd_task(tmp_path / "msd")
    ours = convert_msd(task, resolve_paths(raw_dir=tmp_path / "ours", environ={}), num_processes=1, quiet=True)
    for var, sub in (("nnUNet_raw", "theirs"), ("nnUNet_preprocessed", "pre"), ("nnUNet_results", "res")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    import nnunetv2.dataset_conversion.convert_MSD_dataset as mod

    monkeypatch.setattr(mod, "nnUNet_raw", str(tmp_path / "theirs"))
    convert_msd_dataset(str(task), num_processes=1)
    theirs = tmp_path / "theirs" / "Dataset005_Prostate"
    for sub in ("imagesTr", "imagesTs", "labelsTr"):
        names = sorted(p.name for p in (theirs / sub).iterdir())
        assert names == sorted(p.name for p in (ours / sub).iterdir()), sub
        for name in names:
            a, b = sitk.ReadImage(str(ours / sub / name)), sitk.ReadImage(str(theirs / sub / name))
            assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
            assert a.GetSpacing() == pytest.approx(b.GetSpacing()) and a.GetDirection() == pytest.approx(b.GetDirection())
    t = json.loads((theirs / "dataset.json").read_text())
    o = json.loads((ours / "dataset.json").read_text())
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        assert o[key] == t[key], key


def test_convert_msd_errors(tmp_path):
    paths = resolve_paths(raw_dir=tmp_path / "raw", environ={})
    with pytest.raises(ConversionError, match="expected an MSD task folder named TaskXX_Name"):
        convert_msd(tmp_path, paths)
    task = _msd_task(tmp_path / "msd")
    convert_msd(task, paths, num_processes=1, quiet=True)
    with pytest.raises(ConversionError, match="dataset id 5 is taken by Dataset005_Prostate"):
        convert_msd(task, paths, num_processes=1, quiet=True)
    (task / "labelsTr").rename(task / "labels")
    with pytest.raises(ConversionError, match="labelsTr/ is missing"):
        convert_msd(task, paths, target_id=9)
