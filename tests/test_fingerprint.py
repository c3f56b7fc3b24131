"""Fingerprint parity with nnunetv2's DatasetFingerprintExtractor."""

import json

import numpy as np
import pytest

from oxunet.planning import extract_fingerprint
from peers import require
from synthetic import HIPPOCAMPUS, hippocampus_subset, make_dataset


def _nnunet_fingerprint(raw_root, preprocessed_root, name, monkeypatch):
    require("nnunetv2")
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor

    monkeypatch.setenv("nnUNet_raw", str(raw_root))
    monkeypatch.setenv("nnUNet_preprocessed", str(preprocessed_root))
    monkeypatch.setenv("nnUNet_results", str(preprocessed_root.parent / "results"))
    return DatasetFingerprintExtractor(name, 1, verbose=False).run(overwrite_existing=True)


def _assert_same(ours, theirs):
    np.testing.assert_allclose(np.array(ours["spacings"]), np.array(theirs["spacings"], dtype=float), rtol=1e-12)
    assert ours["shapes_after_crop"] == [list(map(int, s)) for s in theirs["shapes_after_crop"]]
    assert ours["median_relative_size_after_cropping"] == pytest.approx(float(theirs["median_relative_size_after_cropping"]), rel=1e-12)
    t = {str(k): v for k, v in theirs["foreground_intensity_properties_per_channel"].items()}
    assert set(ours["foreground_intensity_properties_per_channel"]) == set(t)
    for ch, stats in ours["foreground_intensity_properties_per_channel"].items():
        for key, value in stats.items():
            assert value == pytest.approx(t[ch][key], rel=1e-6, abs=1e-6), (ch, key)


def test_fingerprint_matches_nnunet_on_anisotropic_ct(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    ds = make_dataset(
        raw / "Dataset201_CT",
        shapes=[(12, 40, 44), (15, 38, 40), (10, 42, 42), (14, 40, 36)],
        spacings=[(3.0, 0.8, 0.8), (2.5, 0.75, 0.75), (3.0, 0.9, 0.9), (3.0, 0.8, 0.8)],
    )
    ours = extract_fingerprint(ds, tmp_path / "ours", num_processes=2, quiet=True)
    theirs = _nnunet_fingerprint(raw, tmp_path / "pre", "Dataset201_CT", monkeypatch)
    _assert_same(ours, theirs)
    # written once, reloaded unless overwrite
    on_disk = json.loads((tmp_path / "ours" / "dataset_fingerprint.json").read_text())
    assert on_disk["oxunet"]["format_version"] == 1
    assert extract_fingerprint(ds, tmp_path / "ours")["shapes_after_crop"] == ours["shapes_after_crop"]


@pytest.mark.skipif(not HIPPOCAMPUS.is_dir(), reason="../shared/data/Dataset004_Hippocampus is not present (CI data only)")
def test_fingerprint_matches_nnunet_on_hippocampus_subset(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    ds = hippocampus_subset(raw / "Dataset004_Hippocampus", 10)
    ours = extract_fingerprint(ds, tmp_path / "ours", num_processes=1, quiet=True)
    theirs = _nnunet_fingerprint(raw, tmp_path / "pre", "Dataset004_Hippocampus", monkeypatch)
    _assert_same(ours, theirs)
    assert np.all(np.array(ours["spacings"]) == 1.0)


def test_cases_without_foreground_contribute_no_samples(tmp_path):
    import SimpleITK as sitk

    from oxunet.io import SimpleITKIO
    from oxunet.kernels import crop_to_nonzero
    from oxunet.planning.fingerprint import channel_statistics, foreground_intensity_samples

    ds = make_dataset(tmp_path / "Dataset202_Empty", shapes=[(8, 20, 22), (9, 18, 20), (8, 22, 20)], spacings=[(2.0, 1.0, 1.0)] * 3)
    empty = ds / "labelsTr" / "case_001.nii.gz"
    img = sitk.ReadImage(str(empty))
    blank = sitk.GetImageFromArray(np.zeros(sitk.GetArrayFromImage(img).shape, np.uint8))
    blank.CopyInformation(img)
    sitk.WriteImage(blank, str(empty))
    fp = extract_fingerprint(ds, tmp_path / "out", num_processes=2, quiet=True)
    per_case = int(1e8 // 3)
    pooled = []
    for i in (0, 2):  # the empty case 1 contributes nothing
        data, _ = SimpleITKIO().read_images([ds / "imagesTr" / f"case_{i:03d}_0000.nii.gz"])
        seg, _ = SimpleITKIO().read_seg(ds / "labelsTr" / f"case_{i:03d}.nii.gz")
        cropped, seg_c, _ = crop_to_nonzero(data, seg.astype(np.int16))
        pooled.append(foreground_intensity_samples(seg_c, cropped, per_case)[0])
    expected = channel_statistics(np.concatenate(pooled))
    assert fp["foreground_intensity_properties_per_channel"]["0"] == pytest.approx(expected, rel=1e-6)
    assert not list(tmp_path.glob("**/oxunet-fingerprint-*"))
