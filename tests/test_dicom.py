"""oxunet.dicom on the shared dicom-example (dcmqi CT + DICOM-SEGs + NRRD masks, rt-utils RTSTRUCTs).

Expected values are from the data's PROVENANCE.md (checked there with pydicom + numpy) and from
SimpleITK's own DICOM series reader. All writes go to tmp_path copies.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from synthetic import find_shared_dataset

pydicom = pytest.importorskip("pydicom", reason="needs the dicom extra (pydicom)")
pytest.importorskip("highdicom", reason="needs the dicom extra (highdicom)")

from click.testing import CliRunner  # noqa: E402

from oxunet.cli import main  # noqa: E402
from oxunet.dicom import (  # noqa: E402
    DicomInputError,
    combine_masks,
    dicom_to_case,
    fill_polygon,
    prediction_to_seg,
    rasterize_rtstruct,
    read_seg,
    read_seg_masks,
    read_series,
)


def _find_example() -> Path | None:
    env = os.environ.get("OXUNET_DICOM_EXAMPLE")
    if env:
        return Path(env) if Path(env).is_dir() else None
    found = find_shared_dataset("dicom-example")
    if found is None and Path("/work/shared/data/dicom-example").is_dir():
        found = Path("/work/shared/data/dicom-example")
    return found


@pytest.fixture(scope="module")
def example() -> Path:
    root = _find_example()
    if root is None:
        pytest.skip("dicom-example data absent (set OXUNET_DICOM_EXAMPLE or provide ../shared/data/dicom-example)")
    return root


@pytest.fixture(scope="module")
def ct(example):
    return read_series(example / "ct")


@pytest.fixture(scope="module")
def phantom(example):
    return read_series(example / "rtstruct-phantom" / "ct")


def _nrrd(example: Path, name: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(example / "masks" / name)))


# ---- series ---------------------------------------------------------------------------------

def test_series_matches_simpleitk_reader(example, ct):
    image, meta = ct
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(example / "ct")))
    ref = reader.Execute()
    assert image.GetSize() == (512, 512, 3)
    # z-spacing from the positions (1.0 mm), not SliceThickness (1.25 mm).
    np.testing.assert_allclose(image.GetSpacing(), (0.810547, 0.810547, 1.0), atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), ref.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(image.GetDirection(), ref.GetDirection())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(ref))
    assert [float(ds.ImagePositionPatient[2]) for ds in meta.datasets] == pytest.approx([-128.69, -127.69, -126.69])
    assert len(set(meta.sop_instance_uids)) == 3


# ---- DICOM-SEG vs the NRRD masks it encodes ---------------------------------------------------

def test_liver_seg_equals_nrrd(example, ct):
    masks, segments = read_seg_masks(example / "seg" / "liver.dcm", ct)
    assert [s.label for s in segments] == ["Liver"]
    assert masks.shape == (1, 3, 512, 512)
    assert int(masks.sum()) == 107_098
    np.testing.assert_array_equal(masks[0], _nrrd(example, "liver_seg.nrrd") > 0)


def test_partial_overlaps_segments_equal_nrrds(example, ct):
    masks, segments = read_seg_masks(example / "seg" / "partial_overlaps.dcm", ct)
    assert [s.label for s in segments] == ["GREEN", "ORANGE", "PURPLE", "LIGHT_BLUE", "DARK_BLUE"]
    assert masks.sum(axis=(1, 2, 3)).tolist() == [9602, 11888, 10743, 6693, 4713]
    source = {1: 1, 2: 2, 3: 3, 4: 1, 5: 1}  # segment k is value k of partial_overlaps-N.nrrd
    for k, n in source.items():
        np.testing.assert_array_equal(masks[k - 1], _nrrd(example, f"partial_overlaps-{n}.nrrd") == k)


def test_overlapping_segments_reported_and_resolved(example, ct):
    path = example / "seg" / "partial_overlaps.dcm"
    with pytest.warns(UserWarning, match=r"3106 voxels belong to more than one structure \(up to 3 at one voxel\)") as rec:
        labels, _ = read_seg(path, ct)
    text = str(rec[0].message)
    assert "GREEN (label 1) & ORANGE (label 2): 3017 voxels" in text
    masks, _ = read_seg_masks(path, ct)
    # "last": a voxel gets the highest segment covering it.
    expected = np.zeros(masks.shape[1:], np.uint8)
    for k in range(5):
        expected[masks[k]] = k + 1
    np.testing.assert_array_equal(labels, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, _ = read_seg(path, ct, overlap="first")
    both = masks[0] & masks[1] & ~masks[2]
    assert (first[both] == 1).all() and (labels[both] == 2).all()
    assert (first > 0).sum() == (labels > 0).sum() == int(masks.any(axis=0).sum())
    with pytest.raises(DicomInputError, match="overlap"):
        read_seg(path, ct, overlap="error")


def test_combine_masks_report_counts_pairs():
    a = np.zeros((2, 4, 4), bool); a[0, :2] = True
    b = np.zeros_like(a); b[0, 1:3] = True
    c = np.zeros_like(a); c[0, 1, 1] = True
    labels, report = combine_masks([a, b, c], ["a", "b", "c"])
    assert report.voxels_in_several == 4 and report.max_structures_per_voxel == 3
    assert report.pairs == {(1, 2): 4, (1, 3): 1, (2, 3): 1}
    assert labels[0, 1, 1] == 3 and labels[0, 1, 0] == 2 and labels[0, 0, 0] == 1 and labels[0, 3, 0] == 0


# ---- RTSTRUCT ---------------------------------------------------------------------------------

def test_mim_rtstruct_rasterised_with_missing_slice_warning(example, phantom):
    path = example / "rtstruct-phantom" / "rtstruct_mim_4rois.dcm"
    labels, names, notes = rasterize_rtstruct(path, phantom)
    assert names == ["ROI-1", "ROI-2", "ROI-3", "ROI-4"]
    ds = pydicom.dcmread(path)
    present = set(phantom[1].sop_instance_uids)
    referenced = [str(c.ReferencedSOPInstanceUID) for c in ds.ReferencedFrameOfReferenceSequence[0]
                  .RTReferencedStudySequence[0].RTReferencedSeriesSequence[0].ContourImageSequence]
    missing = [u for u in referenced if u not in present]
    assert len(referenced) == 5 and len(missing) == 3
    joined = "\n".join(notes)
    assert "references 3 CT instance(s) missing" in joined
    for uid in missing:
        assert uid in joined
    # Every ROI is drawn on both present slices (z = 60, 65); its z = 70 contour is skipped.
    for k in range(1, 5):
        assert (labels[0] == k).sum() > 500 and (labels[1] == k).sum() > 500
        assert f"ROI 'ROI-{k}': 1 contour(s) on missing slice" in joined


def test_mim_rtstruct_fill_matches_matplotlib(example, phantom):
    """Each present contour, filled independently with matplotlib's point-in-polygon at voxel centres."""
    mpath = pytest.importorskip("matplotlib.path")
    image, meta = phantom
    from oxunet.dicom import rasterize_rtstruct_masks

    masks, _, _ = rasterize_rtstruct_masks(example / "rtstruct-phantom" / "rtstruct_mim_4rois.dcm", phantom)
    ds = pydicom.dcmread(example / "rtstruct-phantom" / "rtstruct_mim_4rois.dcm")
    yy, xx = np.mgrid[:512, :512]
    centres = np.c_[xx.ravel(), yy.ravel()]
    sx, sy, _ = image.GetSpacing()
    ox, oy, oz = image.GetOrigin()
    checked = 0
    for k, roi in enumerate(ds.ROIContourSequence):
        for contour in roi.ContourSequence:
            pts = np.asarray(contour.ContourData, float).reshape(-1, 3)
            z = (pts[0, 2] - oz) / 5.0
            if z > 1:
                continue  # z = 70: slice missing
            poly = np.c_[(pts[:, 0] - ox) / sx, (pts[:, 1] - oy) / sy]
            ref = mpath.Path(poly).contains_points(centres).reshape(512, 512)
            np.testing.assert_array_equal(masks[k, int(round(z))], ref)
            checked += 1
    assert checked == 8


def test_rtutils_rtstruct_inner_contour_is_a_hole(example, phantom):
    labels, names, notes = rasterize_rtstruct(example / "rtstruct-phantom" / "rtstruct_rtutils_1roi.dcm", phantom)
    assert names == ["ROI-1"]
    assert (labels[1] == 0).all()
    image = phantom[0]
    px = image.GetSpacing()[0]
    ox, oy, _ = image.GetOrigin()
    to_idx = lambda x, y: (int(round((y - oy) / px)), int(round((x - ox) / px)))  # noqa: E731
    assert labels[0][to_idx(-39.0, -39.0)] == 0  # inside the inner contour: a hole
    assert labels[0][to_idx(-49.0, -39.0)] == 1  # between the two contours
    assert labels[0][to_idx(-60.0, -39.0)] == 0  # outside
    ring_area = 24 * 24 - (15 * 15 - 0.5 - 0.5)  # outer square minus the inner octagon (mm²)
    assert (labels[0] == 1).sum() == pytest.approx(ring_area / px**2, rel=0.03)


def test_fill_polygon_square_counts_centres():
    mask = fill_polygon((10, 10), np.array([1.5, 5.5, 5.5, 1.5]), np.array([2.5, 2.5, 6.5, 6.5]))
    assert mask.sum() == 16 and mask[3:7, 2:6].all()


# ---- to-nifti -------------------------------------------------------------------------------

def test_to_nifti_cli_writes_case_and_dataset_json(example, ct, tmp_path):
    out = tmp_path / "Dataset900_Dicom"
    result = CliRunner().invoke(main, [
        "dicom", "to-nifti", str(example / "ct"), "--seg", str(example / "seg" / "liver.dcm"),
        "--seg", str(example / "seg" / "partial_overlaps.dcm"), "-o", str(out), "--case", "jan", "--dataset-json"])
    assert result.exit_code == 0, result.output
    assert "voxels belong to more than one structure" in result.output
    image = sitk.ReadImage(str(out / "imagesTr" / "jan_0000.nii.gz"))
    label = sitk.ReadImage(str(out / "labelsTr" / "jan.nii.gz"))
    for im in (image, label):
        np.testing.assert_allclose(im.GetSpacing(), ct[0].GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(im.GetOrigin(), ct[0].GetOrigin(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(ct[0]))
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "Liver": 1, "GREEN": 2, "ORANGE": 3, "PURPLE": 4, "LIGHT_BLUE": 5,
                            "DARK_BLUE": 6}
    assert ds["numTraining"] == 1 and ds["file_ending"] == ".nii.gz" and ds["channel_names"] == {"0": "CT"}
    arr = sitk.GetArrayFromImage(label)
    liver = _nrrd(example, "liver_seg.nrrd") > 0
    dark_blue = _nrrd(example, "partial_overlaps-1.nrrd") == 5
    assert (arr[dark_blue] == 6).all()  # last one wins
    assert ((arr == 1) == (liver & (arr < 2))).all()
    # A second case with other structures is refused: dataset.json labels must agree.
    with pytest.raises(DicomInputError, match="labels"):
        dicom_to_case(example / "ct", out, "jan2", segs=[example / "seg" / "liver.dcm"], dataset_json=True)


def test_to_nifti_rtstruct_cli_warns_not_fails(example, tmp_path):
    result = CliRunner().invoke(main, [
        "dicom", "to-nifti", str(example / "rtstruct-phantom" / "ct"),
        "--rtstruct", str(example / "rtstruct-phantom" / "rtstruct_mim_4rois.dcm"), "-o", str(tmp_path), "--case", "ph"])
    assert result.exit_code == 0, result.output
    assert "missing from series" in result.output
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "labelsTr" / "ph.nii.gz")))
    assert set(np.unique(arr).tolist()) == {0, 1, 2, 3, 4}


# ---- from-prediction round trip ---------------------------------------------------------------

def test_from_prediction_round_trip(example, ct, tmp_path):
    rng = np.random.default_rng(0)
    pred = np.zeros((3, 512, 512), np.uint8)
    pred[:, 100:200, 150:300] = 1
    pred[1:, 250:320, 200:260] = 2
    pred[0][rng.random((512, 512)) < 0.01] = 3
    pred_image = sitk.GetImageFromArray(pred)
    pred_image.CopyInformation(ct[0])
    pred_path = tmp_path / "case.nii.gz"
    sitk.WriteImage(pred_image, str(pred_path))
    labels_json = tmp_path / "dataset.json"
    labels_json.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2, "noise": 3}}))
    out = tmp_path / "seg.dcm"
    result = CliRunner().invoke(main, ["dicom", "from-prediction", str(pred_path), str(example / "ct"), "-o", str(out),
                                       "--labels", str(labels_json)])
    assert result.exit_code == 0, result.output
    labels, segments = read_seg(out, ct)
    np.testing.assert_array_equal(labels, pred)
    assert [s.label for s in segments] == ["liver", "tumour", "noise"]
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == ct[1].study_instance_uid
    assert ds.FrameOfReferenceUID == ct[1].frame_of_reference_uid
    ref = ds.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == ct[1].series_instance_uid
    assert {str(i.ReferencedSOPInstanceUID) for i in ref.ReferencedInstanceSequence} == set(ct[1].sop_instance_uids)


def test_from_prediction_off_grid_refused(example, ct, tmp_path):
    pred = sitk.Image(512, 512, 3, sitk.sitkUInt8)
    pred.CopyInformation(ct[0])
    pred.SetSpacing((0.9, 0.9, 1.0))
    sitk.WriteImage(pred, str(tmp_path / "p.nii.gz"))
    with pytest.raises(DicomInputError, match=r"p.nii.gz.*not on the series grid: spacing"):
        prediction_to_seg(tmp_path / "p.nii.gz", example / "ct", tmp_path / "o.dcm")
    assert not (tmp_path / "o.dcm").exists()


# ---- bad input ----------------------------------------------------------------------------

def _synthetic_series(example: Path, folder: Path, zs: list[float], rows: int | None = None) -> Path:
    """Copies of the first CT slice at positions ``zs`` (new SOP UIDs), as a fresh series."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True)
    src = pydicom.dcmread(example / "ct" / "01.dcm")
    series_uid = generate_uid()
    for i, z in enumerate(zs):
        ds = src.copy()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [src.ImagePositionPatient[0], src.ImagePositionPatient[1], z]
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"s{i:02d}.dcm")
    return folder


def test_missing_slice_is_a_clear_error(example, tmp_path):
    folder = _synthetic_series(example, tmp_path / "gap", [0.0, 1.0, 2.0, 4.0, 5.0])
    with pytest.raises(DicomInputError, match=r"1 missing slice\(s\) between s02.dcm \(z=2 mm\) and s03.dcm \(z=4 mm\)"):
        read_series(folder)
    result = CliRunner().invoke(main, ["dicom", "to-nifti", str(folder), "-o", str(tmp_path / "o"), "--case", "x"])
    assert result.exit_code == 1 and "missing slice" in result.output and "Traceback" not in result.output


def test_real_series_with_middle_slice_removed_warns(example, tmp_path):
    """Two slices 2 mm apart look regular; the InstanceNumber jump 1 → 3 reveals the removed slice."""
    folder = tmp_path / "ct"
    shutil.copytree(example / "ct", folder)
    (folder / "02.dcm").unlink()
    with pytest.warns(UserWarning, match=r"InstanceNumber jumps from 3 \(03.dcm\) to 1 \(01.dcm\)"):
        image, _ = read_series(folder)
    assert image.GetSize() == (512, 512, 2) and image.GetSpacing()[2] == pytest.approx(2.0)
    result = CliRunner().invoke(main, ["dicom", "to-nifti", str(folder), "-o", str(tmp_path / "o"), "--case", "x"])
    assert result.exit_code == 0 and "warning: series in" in result.output


def test_inconsistent_spacing_is_a_clear_error(example, tmp_path):
    folder = _synthetic_series(example, tmp_path / "uneven", [0.0, 1.0, 2.0, 3.5, 4.5])
    with pytest.raises(DicomInputError, match=r"inconsistent slice spacing between s02.dcm .* 1.5 mm"):
        read_series(folder)


def test_mixed_size_and_duplicate_position_are_errors(example, tmp_path):
    folder = _synthetic_series(example, tmp_path / "dup", [0.0, 1.0, 1.0])
    with pytest.raises(DicomInputError, match="same position"):
        read_series(folder)


def test_not_a_dicom_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DicomInputError, match="not a DICOM image series \\(no DICOM files\\)"):
        read_series(tmp_path)
    result = CliRunner().invoke(main, ["dicom", "to-nifti", str(tmp_path), "-o", str(tmp_path / "o"), "--case", "x"])
    assert result.exit_code == 1 and "not a DICOM image series" in result.output


def test_seg_given_as_series_and_rtstruct_as_seg(example, ct, tmp_path):
    with pytest.raises(DicomInputError, match="not a DICOM image series"):
        read_series(example / "seg")
    with pytest.raises(DicomInputError, match="not a DICOM-SEG"):
        read_seg_masks(example / "rtstruct-phantom" / "rtstruct_mim_4rois.dcm", ct)


def test_missing_extra_names_the_install(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImportError, match=r"install oxunet\[dicom\]"):
        read_series(tmp_path)
    result = CliRunner().invoke(main, ["dicom", "to-nifti", str(tmp_path), "-o", str(tmp_path / "o"), "--case", "x"])
    assert result.exit_code == 1 and "oxunet[dicom]" in result.output
