"""import-masks: one mask per structure into a label map, with an explicit overlap policy."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from oxunet.dataset import load_dataset_json
from oxunet.dataset.import_masks import ImportMasksError, cases_from_csv, cases_from_folders, import_masks
from oxunet.dataset.verify import verify_dataset


def _write(path, arr, spacing=(0.8, 0.8, 2.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def _source(root, overlap=True):
    """Two cases; liver and tumour overlap in case a (tumour inside liver), spleen separate."""
    shape = (6, 10, 12)
    for case in ("a", "b"):
        d = root / case
        d.mkdir(parents=True)
        _write(d / "image.nii.gz", np.random.default_rng(0).random(shape).astype(np.float32))
        liver = np.zeros(shape, np.uint8)
        liver[1:5, 1:6, 1:6] = 1
        spleen = np.zeros(shape, np.uint8)
        spleen[1:5, 7:9, 8:11] = 1
        tumour = np.zeros(shape, np.uint8)
        if overlap and case == "a":
            tumour[2:4, 2:4, 2:4] = 1  # 8 voxels inside the liver
        _write(d / "liver.nii.gz", liver)
        _write(d / "spleen.nrrd", spleen)
        _write(d / "tumour.nii.gz", tumour)
    return root


def _label(out, case):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / f"{case}.nii.gz")))


def test_overlap_error_names_case_and_structures(tmp_path):
    cases = cases_from_folders(_source(tmp_path / "src"))
    with pytest.raises(ImportMasksError, match=r"case a: 8 voxel\(s\) belong to several structures \(e.g. liver & tumour: 8\)"):
        import_masks(cases, tmp_path / "Dataset010_Abd", ["liver", "spleen", "tumour"], ["CT"], num_processes=1, quiet=True)
    assert not (tmp_path / "Dataset010_Abd" / "dataset.json").exists()


def test_last_wins_paints_in_order(tmp_path):
    cases = cases_from_folders(_source(tmp_path / "src"))
    out = tmp_path / "Dataset010_Abd"
    summary = import_masks(cases, out, ["liver", "spleen", "tumour"], ["CT"], overlap="last-wins", num_processes=1, quiet=True)
    seg = _label(out, "a")
    assert seg[3, 3, 3] == 3 and seg[1, 1, 1] == 1 and seg[2, 8, 9] == 2
    assert np.count_nonzero(seg == 3) == 8 and np.count_nonzero(seg == 1) == 4 * 5 * 5 - 8
    assert summary["overlap_voxels"] == {"a": 8, "b": 0}
    assert json.loads((out / "dataset.json").read_text())["labels"] == {"background": 0, "liver": 1, "spleen": 2, "tumour": 3}
    assert verify_dataset(out, num_processes=1).ok
    img = sitk.ReadImage(str(out / "imagesTr" / "a_0000.nii.gz"))
    assert img.GetSpacing() == pytest.approx((0.8, 0.8, 2.0))


def test_regions_keep_overlaps(tmp_path):
    cases = cases_from_folders(_source(tmp_path / "src"))
    out = tmp_path / "Dataset010_Abd"
    summary = import_masks(cases, out, ["liver", "spleen", "tumour"], ["CT"], overlap="regions", num_processes=1, quiet=True)
    # combinations present: liver (1), spleen (2), liver+tumour (3)
    assert summary["labels"] == {"background": 0, "liver": [1, 3], "spleen": 2, "tumour": 3}
    info = load_dataset_json(out / "dataset.json")
    assert info.has_regions and info.foreground_regions == [(1, 3), 2, 3]
    assert info.regions_class_order == (1, 2, 3)
    seg = _label(out, "a")
    assert np.count_nonzero(seg == 3) == 8 and np.count_nonzero(np.isin(seg, [1, 3])) == 100
    assert verify_dataset(out, num_processes=1).ok


def test_geometry_mismatch_names_the_file(tmp_path):
    src = _source(tmp_path / "src")
    _write(src / "b" / "spleen.nrrd", np.zeros((6, 10, 13), np.uint8))
    with pytest.raises(ImportMasksError, match=r"case b: spleen.nrrd has size \(13, 10, 6\), image image.nii.gz has \(12, 10, 6\)"):
        import_masks(cases_from_folders(src), tmp_path / "Dataset010_Abd", ["liver", "spleen", "tumour"], ["CT"],
                     overlap="last-wins", num_processes=1, quiet=True)


def test_csv_mapping_and_missing_structure(tmp_path):
    src = _source(tmp_path / "src", overlap=False)
    rows = ["case,image,structure,mask"]
    for case in ("a", "b"):
        rows.append(f"{case},src/{case}/image.nii.gz,liver,src/{case}/liver.nii.gz")
        if case == "a":
            rows.append(f"{case},src/{case}/image.nii.gz,spleen,src/{case}/spleen.nrrd")
    (tmp_path / "map.csv").write_text("\n".join(rows) + "\n")
    cases = cases_from_csv(tmp_path / "map.csv")
    assert sorted(cases) == ["a", "b"] and cases["a"].images == [src / "a" / "image.nii.gz"]
    out = tmp_path / "Dataset011_Csv"
    with pytest.warns(UserWarning, match="case b: no mask for spleen"):
        import_masks(cases, out, ["liver", "spleen"], ["CT"], num_processes=1, quiet=True)
    assert np.count_nonzero(_label(out, "b") == 2) == 0 and np.count_nonzero(_label(out, "a") == 2) == 4 * 2 * 3


def test_bad_arguments(tmp_path):
    cases = cases_from_folders(_source(tmp_path / "src"))
    with pytest.raises(ImportMasksError, match="must be named DatasetXXX_Name"):
        import_masks(cases, tmp_path / "out", ["liver"], ["CT"])
    with pytest.raises(ImportMasksError, match="overlap: expected one of"):
        import_masks(cases, tmp_path / "Dataset010_X", ["liver"], ["CT"], overlap="union")
    with pytest.raises(ImportMasksError, match=r"case a: 1 image file\(s\) but 2 channel name\(s\)"):
        import_masks(cases, tmp_path / "Dataset010_X", ["liver"], ["CT", "PET"])


def test_cli_import_masks(tmp_path):
    from click.testing import CliRunner

    from oxunet.cli import main

    src = _source(tmp_path / "src")
    out = tmp_path / "Dataset012_Cli"
    bad = CliRunner().invoke(main, ["import-masks", str(src), "-o", str(out), "--labels", "liver,spleen,tumour", "-np", "1", "-q"])
    assert bad.exit_code == 1 and "belong to several structures" in bad.output
    ok = CliRunner().invoke(main, ["import-masks", str(src), "-o", str(out), "--labels", "liver,spleen,tumour", "--overlap", "regions", "-np", "1", "-q"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["labels"]["liver"] == [1, 3]
