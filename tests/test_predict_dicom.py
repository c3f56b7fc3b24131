"""DICOM end to end on the shared dicom-example: `oxunet predict -i DICOM_FOLDER` with one case per
series, DICOM-SEG and RTSTRUCT out; the objects read back to the predicted labels and carry what a
viewer needs (referenced series and instances, study, frame of reference, segment / ROI names);
the RTSTRUCT writer's outlines give back masks exactly."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from inference_models import tiny_project, write_model_folder
from synthetic import find_shared_dataset

pydicom = pytest.importorskip("pydicom", reason="needs the dicom extra (pydicom)")
pytest.importorskip("highdicom", reason="needs the dicom extra (highdicom)")

from oxunet.dicom import rasterize_rtstruct_masks, read_seg, read_series  # noqa: E402
from oxunet.dicom.rtstruct_write import mask_outlines, write_rtstruct  # noqa: E402
from oxunet.dicom.rtstruct import fill_polygon  # noqa: E402


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


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_outlines_fill_back_to_the_mask():
    rng = np.random.default_rng(0)
    mask = rng.random((23, 31)) < 0.35  # speckle: single pixels, diagonal contacts, holes
    mask[5:15, 5:20] = True
    mask[8:11, 9:12] = False
    filled = np.zeros_like(mask)
    for outline in mask_outlines(mask):
        assert np.all(np.abs(outline - np.round(outline)) == 0.5)  # vertices on pixel corners
        filled ^= fill_polygon(mask.shape, outline[:, 1], outline[:, 0])
    np.testing.assert_array_equal(filled, mask)
    square = np.zeros((4, 4), bool)
    square[1:3, 1:3] = True
    (only,) = mask_outlines(square)
    assert len(only) == 4  # collinear vertices dropped


def test_rtstruct_round_trip_and_fields(example, tmp_path):
    series = read_series(example / "ct")
    image, meta = series
    labels = np.zeros(image.GetSize()[::-1], np.uint8)
    labels[:, 200:260, 100:180] = 1
    labels[1, 220:230, 120:130] = 0
    labels[2, 300:305, 300:302] = 2
    out = write_rtstruct(labels, series, tmp_path / "rt.dcm", {1: "liver", 2: "spleen"})
    masks, names, notes = rasterize_rtstruct_masks(out, series)
    assert names == ["liver", "spleen"] and notes == []
    np.testing.assert_array_equal(masks[0], labels == 1)
    np.testing.assert_array_equal(masks[1], labels == 2)
    ds = pydicom.dcmread(out)
    assert ds.Modality == "RTSTRUCT" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.3"
    assert ds.StudyInstanceUID == meta.study_instance_uid and ds.PatientID == meta.datasets[0].PatientID
    assert ds.FrameOfReferenceUID == meta.frame_of_reference_uid
    ref = ds.ReferencedFrameOfReferenceSequence[0]
    assert ref.FrameOfReferenceUID == meta.frame_of_reference_uid
    rs = ref.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert rs.SeriesInstanceUID == meta.series_instance_uid
    assert [i.ReferencedSOPInstanceUID for i in rs.ContourImageSequence] == meta.sop_instance_uids
    spleen = ds.ROIContourSequence[1].ContourSequence
    assert len(spleen) == 1 and spleen[0].ContourImageSequence[0].ReferencedSOPInstanceUID == meta.sop_instance_uids[2]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("dcm_model")
    proj = tiny_project(root)
    from inference_models import shrink_configuration

    shrink_configuration(proj["plans"], "3d_fullres", [8, 128, 128], [4, 8, 8])  # few windows on 512² slices
    return write_model_folder(root / "models" / "nnUNetTrainer__nnUNetPlans__3d_fullres", proj["plans"],
                              proj["dataset_json"], "3d_fullres", folds=(0,), nnunet=False, seed=11), proj


class _Bands(torch.nn.Module):
    """Intensity bands of a blurred image: anatomy-like regions (a random U-Net's speckle would give
    ~10^5 tiny contours, which no RTSTRUCT of a real model has)."""

    def forward(self, x):
        s = torch.nn.functional.avg_pool3d(x, (1, 15, 15), stride=1, padding=(0, 7, 7), count_include_pad=False)
        s = (s - s.mean()) / (s.std() + 1e-6)  # bands relative to the window: any intensity scale
        return torch.cat([-(s - c) ** 2 for c in (-1.5, -0.5, 0.5, 1.5)], 1)


def test_predict_dicom_folder_writes_seg_and_rtstruct(example, model, tmp_path):
    from click.testing import CliRunner

    from oxunet.cli import main
    from oxunet.inference import Predictor, predict_folder

    model_dir, proj = model
    inp = tmp_path / "in"
    shutil.copytree(example / "ct", inp / "patient")
    shutil.copytree(example / "rtstruct-phantom", inp / "phantom")  # its CT series plus two RTSTRUCTs (not images)
    out = tmp_path / "out"
    pred = Predictor.from_networks(proj["plans"], "3d_fullres", proj["dataset_json"], [_Bands()], None, tta="none",
                                   device="cpu", precision="fp32")
    report = predict_folder(inp, out, None, predictor=pred, output_formats=("nifti", "dicom-seg", "rtstruct"),
                            num_processes_preprocessing=0, num_processes_export=0, quiet=True)
    assert report == json.loads((out / "prediction_report.json").read_text())
    cases = {c["case"]: c for c in report["cases"]}
    assert len(cases) == 2 and sum(c.startswith("patient") for c in cases) == 1, sorted(cases)
    names = {int(v): k for k, v in proj["dataset_json"]["labels"].items() if int(v)}
    for case, entry in cases.items():
        sub = "patient" if case.startswith("patient") else "phantom/ct"
        series = read_series(inp / sub)
        image, meta = series
        assert entry["dicom"]["series_instance_uid"] == meta.series_instance_uid
        pred_img = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        assert pred_img.GetSize() == image.GetSize()
        np.testing.assert_allclose(pred_img.GetOrigin(), image.GetOrigin(), atol=1e-4)
        pred = sitk.GetArrayFromImage(pred_img)
        assert len(np.unique(pred)) > 1  # a real, non-trivial label map
        # DICOM-SEG: back to the labels, referencing the series, the dataset's names
        seg_labels, segments = read_seg(out / f"{case}_seg.dcm", series)
        present = sorted(int(v) for v in np.unique(pred) if v)
        by_name = {s.label: s for s in segments}
        assert set(by_name) == set(names.values())
        back = np.zeros_like(pred)
        for value, name in names.items():
            back[seg_labels == by_name[name].number] = value
        np.testing.assert_array_equal(back, pred)
        ds = pydicom.dcmread(out / f"{case}_seg.dcm")
        assert ds.Modality == "SEG" and ds.FrameOfReferenceUID == meta.frame_of_reference_uid
        assert ds.StudyInstanceUID == meta.study_instance_uid
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == meta.series_instance_uid
        # RTSTRUCT: rasterised back to the labels
        masks, roi_names, notes = rasterize_rtstruct_masks(out / f"{case}_rtstruct.dcm", series)
        assert roi_names == [names[v] for v in sorted(names)] and notes == []
        for k, value in enumerate(sorted(names)):
            np.testing.assert_array_equal(masks[k], pred == value)
        assert present
        assert [Path(f).name for f in entry["dicom"]["files"]] == [f"{case}_seg.dcm", f"{case}_rtstruct.dcm"]
    # the command line: a DICOM folder in, DICOM-SEG out (random weights: only that it runs and writes)
    r = CliRunner().invoke(main, ["predict", "-i", str(inp / "phantom"), "-o", str(tmp_path / "o1"), "-m",
                                  str(model_dir), "--tta", "none", "--output-format", "dicom-seg", "-npp", "0", "-nps",
                                  "0", "--quiet"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "o1").glob("*_seg.dcm"))) == 1
    r = CliRunner().invoke(main, ["predict", "-i", str(proj["test_images"]), "-o", str(tmp_path / "o2"), "-m",
                                  str(model_dir), "--output-format", "rtstruct", "--quiet"])
    assert r.exit_code != 0 and "needs DICOM series as input" in r.output
