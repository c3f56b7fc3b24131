"""`oxunet report MODEL_FOLDER`: the HTML's content, on a hand-made model folder (no training)."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from evalpost_helpers import write_seg

DATASET = "Dataset977_Report"
MODEL = "nnUNetTrainer__nnUNetPlans__3d_fullres"
LABELS = {"background": 0, "liver": 1, "tumour": 2}
SPACING = (2.0, 1.0, 1.0)


def _reference(rng) -> np.ndarray:
    seg = np.zeros((10, 24, 24), np.uint8)
    seg[2:8, 4:12, 4:12] = 1
    seg[3:7, 14:20, 14:20] = 2
    return seg


def make_model_folder(root: Path, n_cases: int = 5, hd95: bool = True) -> Path:
    """raw images, references, and a model folder whose fold 0 validated ``n_cases`` predictions of
    decreasing quality: case_000 is perfect, each next one loses more of the tumour."""
    from oxunet.evaluation import evaluate_folders

    rng = np.random.default_rng(0)
    raw = root / "raw" / DATASET
    (raw / "imagesTr").mkdir(parents=True)
    gt = root / "preprocessed" / DATASET / "gt_segmentations"
    gt.mkdir(parents=True)
    model = root / "results" / DATASET / MODEL
    val = model / "fold_0" / "validation"
    val.mkdir(parents=True)
    for i in range(n_cases):
        case = f"case_{i:03d}"
        ref = _reference(rng)
        image = (ref * 60.0 + rng.normal(100, 5, ref.shape)).astype(np.float32)
        write_seg(gt / f"{case}.nii.gz", ref, spacing=SPACING)
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(image)
        img.SetSpacing(SPACING[::-1])
        img.SetOrigin((3.0, 2.0, 1.0))
        sitk.WriteImage(img, str(raw / "imagesTr" / f"{case}_0000.nii.gz"))
        pred = ref.copy()
        pred[3:7, 14:20, 14:14 + i] = 0  # case i misses i of the tumour's 6 columns: Dice 2(6-i)/(12-i)
        write_seg(val / f"{case}.nii.gz", pred, spacing=SPACING)
    evaluate_folders(gt, val, [1, 2], file_ending=".nii.gz", output_file=val / "summary.json", num_processes=1,
                     quiet=True, distance_metrics=hd95)
    plans = json.loads((Path(__file__).parent / "inference_tiny_plans.json").read_text())
    plans["dataset_name"] = DATASET
    (model / "plans.json").write_text(json.dumps(plans))
    ds = {"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": n_cases, "file_ending": ".nii.gz", "name": "report test"}
    (model / "dataset.json").write_text(json.dumps(ds))
    epochs = [{"epoch": e, "train_loss": 0.5 - 0.1 * e, "val_loss": 0.4 - 0.1 * e, "pseudo_dice": [0.5 + 0.1 * e, 0.3 + 0.1 * e],
               "mean_fg_dice": 0.4 + 0.1 * e, "ema_fg_dice": 0.4 + 0.05 * e, "lr": 0.01, "epoch_time_s": 2.5} for e in range(4)]
    (model / "fold_0" / "training_log.json").write_text(json.dumps({"version": 1, "epochs": epochs}))
    (model / "fold_0" / "debug.json").write_text(json.dumps({"device": "cpu", "precision": "fp32", "batch_size": 2}))
    return model


def _table_rows(page: str) -> list[list[str]]:
    body = page.split('id="cases"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body.split("</tr>") if "<td" in row]


def test_report_html_content(tmp_path):
    from oxunet.cli import main

    model = make_model_folder(tmp_path)
    r = CliRunner().invoke(main, ["report", str(model), "--raw-dir", str(tmp_path / "raw")])
    assert r.exit_code == 0, r.output
    out = model / "report.html"
    assert r.output.strip() == str(out)
    page = out.read_text()
    summary = json.loads((model / "fold_0" / "validation" / "summary.json").read_text())
    # the per-case table: one row per validation case with its summary.json values
    rows = _table_rows(page)
    assert [row[1] for row in rows] == [f"case_{i:03d}" for i in range(5)]
    head = re.findall(r"<th>(.*?)</th>", page.split('id="cases"', 1)[1].split("</thead>", 1)[0])
    assert head[:3] == ["fold", "case", "mean Dice"]
    assert "Dice tumour (2)" in head and "HD95 liver (1)" in head and "NSD tumour (2)" in head
    for row, entry in zip(rows, summary["metric_per_case"]):
        cells = dict(zip(head, row))
        for key, name in (("1", "liver"), ("2", "tumour")):
            assert cells[f"Dice {name} ({key})"] == f"{entry['metrics'][key]['Dice']:.4f}"
            assert cells[f"HD95 {name} ({key})"] == f"{entry['metrics'][key]['HD95']:.2f}"
    assert rows[0][head.index("Dice liver (1)")] == "1.0000" and rows[4][head.index("Dice tumour (2)")] == "0.5000"
    # numbers sort as numbers: every numeric cell carries its value
    assert '<td data-v="0.75">0.7500</td>' in page  # case_004's mean Dice (1 + 0.5) / 2
    assert 'class="sortable" id="cases"' in page and "addEventListener('click'" in page
    # mean Dice cards as summary.json's means
    for key in ("1", "2"):
        assert f"<b>{summary['mean'][key]['Dice']:.3f}</b>" in page
    # worst cases first, each with an embedded image/reference/prediction picture
    worst = page.split('id="worst"', 1)[1].split("</section>", 1)[0]
    assert [m for m in re.findall(r"case_\d{3}", worst)][::2][:3] == ["case_004", "case_003", "case_002"]
    pictures = re.findall(r'<img alt="(case_\d+)" src="data:image/png;base64,([^"]+)"', worst)
    assert [p[0] for p in pictures] == ["case_004", "case_003", "case_002"]
    png = base64.b64decode(pictures[0][1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    # training curves, the network diagram, dataset, plans and the stage timings
    assert 'alt="training curves of fold 0"' in page and 'alt="network of 3d_fullres"' in page
    assert "liver = 1" in page and "tumour = 2" in page and "report test" in page
    assert "training fold 0 (4 epochs)" in page and '<td data-v="10.0">10.0</td>' in page
    # self-contained: every src is a data URI, no link to anything outside the file
    assert not re.findall(r'(?:src|href)="(?!data:)', page)
    assert "http://" not in page and "https://" not in page


def test_report_without_raw_images_or_validation(tmp_path):
    from oxunet.report import write_report

    model = make_model_folder(tmp_path, n_cases=2, hd95=False)
    page = write_report(model, tmp_path / "r.html", raw_dir=None).read_text()  # references as background
    assert page.count('<img alt="case_') == 2 and "HD95" not in page
    shutil.rmtree(model / "fold_0" / "validation")
    page = write_report(model, tmp_path / "r2.html").read_text()
    assert "No validation summary" in page and 'alt="training curves of fold 0"' in page


def test_report_refuses_a_folder_that_is_not_a_model(tmp_path):
    from oxunet.cli import main

    r = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert r.exit_code == 1 and "not a model folder" in r.output and "Traceback" not in r.output


@pytest.fixture
def report_for_browser(tmp_path):
    model = make_model_folder(tmp_path)
    from oxunet.report import write_report

    return write_report(model, raw_dir=tmp_path / "raw")


def test_report_after_validation_logs_instead_of_failing(tmp_path):
    """The trainer's hook: a report that cannot be written costs a log line, never the training."""
    from oxunet.report import report_after_validation

    lines: list[str] = []
    assert report_after_validation(tmp_path, lines.append) is None
    assert len(lines) == 1 and lines[0].startswith("report not written: ReportError:")
    model = make_model_folder(tmp_path / "m")
    out = report_after_validation(model, lines.append)
    assert out == model / "report.html" and lines[-1] == f"report: {out}"
