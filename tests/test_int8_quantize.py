"""Int8 post-training quantisation: ``export-model --format onnx --quantize int8 --calibration``
writes and records ``fold_N.int8.onnx``; ``predict --precision int8`` runs it with onnxruntime and
OpenVINO, agreeing with fp32; int8 is refused where it cannot run, with the fix in the message."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from oxunet.inference import InferenceError, Predictor
from oxunet.inference.backends import resolve_backend_precision
from oxunet.inference.onnx_export import MANIFEST_NAME, OnnxExportError, export_onnx
from oxunet.inference.runtime import PrecisionError, resolve_precision

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")
onnx = pytest.importorskip("onnx")

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def exported(project):
    """Fold 0 of conftest's random two-fold model exported through the CLI with int8, calibrated
    on the tiny dataset's four raw training cases."""
    from click.testing import CliRunner

    from oxunet.cli import main

    out = project["root"] / "onnx_int8"
    r = CliRunner().invoke(main, ["export-model", "--format", "onnx", "-m", str(project["model"]), "-o", str(out),
                                  "-f", "0", "--exporter", "torchscript", "--quantize", "int8",
                                  "--calibration", str(project["raw"] / "imagesTr"), "--calibration-cases", "3"])
    assert r.exit_code == 0, r.output
    assert "int8 models calibrated on 3 case(s)" in r.output
    return out


def _manifest(folder) -> dict:
    return json.loads((folder / MANIFEST_NAME).read_text())


def test_int8_file_is_written_and_recorded(exported, project):
    m = _manifest(exported)
    entry = m["folds"][0]
    assert entry["file"] == "fold_0.onnx" and entry["int8"]["file"] == "fold_0.int8.onnx"
    assert (exported / "fold_0.int8.onnx").is_file() and len(entry["int8"]["sha256"]) == 64
    assert 0.9 <= entry["int8"]["calibration_argmax_agreement"] <= 1.0
    q = m["quantization"]
    assert q["precision"] == "int8" and q["route"]["format"] == "QDQ"
    assert q["route"]["tool"] == "onnxruntime.quantization.quantize_static"
    assert q["route"]["calibration_method"] == "MinMax" and q["route"]["op_types"] == ["Conv", "ConvTranspose"]
    raw_cases = sorted(p.name[:-len("_0000.nii.gz")] for p in (project["raw"] / "imagesTr").glob("*_0000.nii.gz"))
    assert q["calibration"]["cases"] == raw_cases[:3]
    assert q["calibration"]["windows"] >= 3  # at least one sliding window per case
    assert m["version"] == 1  # the int8 record is optional: fp32 readers are unaffected
    graph = onnx.load(str(exported / "fold_0.int8.onnx")).graph
    ops = [n.op_type for n in graph.node]
    convs = ops.count("Conv") + ops.count("ConvTranspose")
    assert convs > 0 and ops.count("QuantizeLinear") >= convs  # every convolution's input is quantised
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 4]
    assert len(int8_weights) == convs - 1  # every convolution's weight but the segmentation head's
    head = next(n for n in graph.node if "logits" in n.output)
    float_initializers = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    assert head.op_type == "Conv" and head.input[1] in float_initializers  # its weight stayed float
    assert q["route"]["float_nodes"].startswith("the convolutions writing graph outputs")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_predictions_agree_with_fp32(exported, project, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    case = sorted(project["test_images"].glob("*_0000.nii.gz"))
    fp32 = Predictor.from_model_folder(exported, backend=backend, precision="fp32", tta="none")
    int8 = Predictor.from_model_folder(exported, backend=backend, precision="int8", tta="none")
    assert int8.precision == "int8" and int8.networks[0].path.name == "fold_0.int8.onnx"
    ref, got = fp32.predict_case(case).segmentation, int8.predict_case(case).segmentation
    assert got.shape == ref.shape and len(np.unique(ref)) > 1
    # a random tiny network has many near-ties (0.96 here with VNNI); CPUs without VNNI may round
    # int8 sums differently, so the bound leaves room while a broken graph lands far below it
    assert (got == ref).mean() >= 0.9
    data = np.random.default_rng(0).standard_normal((1, 16, 16, 16)).astype(np.float32)
    assert not np.array_equal(fp32.predict_logits(data), int8.predict_logits(data))  # int8 really ran


def test_export_without_int8_is_refused_with_the_fix(exported, tmp_path):
    fp32_only = tmp_path / "fp32_only"
    shutil.copytree(exported, fp32_only)
    m = _manifest(fp32_only)
    del m["quantization"], m["folds"][0]["int8"]
    (fp32_only / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(InferenceError, match=r"fold 0 has no int8 model; re-export with .*--quantize int8 "
                                             r"--calibration DIR"):
        Predictor.from_model_folder(fp32_only, backend="openvino", precision="int8")
    (exported / "fold_0.int8.onnx").rename(tmp_path / "moved.onnx")
    try:
        with pytest.raises(InferenceError, match=r"fold_0.int8.onnx: int8 ONNX file of fold 0 missing"):
            Predictor.from_model_folder(exported, backend="onnxruntime", precision="int8")
    finally:
        (tmp_path / "moved.onnx").rename(exported / "fold_0.int8.onnx")


def test_int8_is_refused_where_it_cannot_run(project, exported):
    assert resolve_backend_precision("openvino", "int8") == "int8"
    assert resolve_backend_precision("onnxruntime", "int8") == "int8"
    with pytest.raises(PrecisionError, match="torch has no int8 path"):
        resolve_backend_precision("torch", "int8")
    with pytest.raises(PrecisionError, match="torch has no int8 path"):
        Predictor.from_model_folder(project["model"], [0], precision="int8")
    with pytest.raises(InferenceError, match="not a trained-model folder; export one with .*--quantize int8"):
        Predictor.from_model_folder(project["model"], [0], backend="openvino", precision="int8")
    with pytest.raises(InferenceError, match="not torch"):
        Predictor.from_model_folder(exported, backend="torch", precision="int8")
    with pytest.raises(PrecisionError, match="precision must be one of"):
        resolve_precision("int8", "cpu")  # training and torch inference keep their precisions
    with pytest.raises(OnnxExportError, match="--quantize int8 needs --calibration DIR"):
        export_onnx(project["model"], project["root"] / "never", [0], quantize="int8")


def test_cli_predict_int8_and_its_refusals(project, exported, tmp_path):
    from click.testing import CliRunner

    from oxunet.cli import main

    def predict(*extra):
        return CliRunner().invoke(main, ["predict", "-i", str(project["test_images"]), "-o", str(tmp_path / "p"),
                                         "--tta", "none", "-npp", "0", "-nps", "0", "--quiet", *extra])

    r = predict("-m", str(exported), "--backend", "onnxruntime", "--precision", "int8")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "p" / "prediction_report.json").read_text())
    assert report["model"]["backend"] == "onnxruntime" and report["model"]["precision"] == "int8"
    r = predict("-m", str(project["model"]), "--backend", "torch", "--precision", "int8")
    assert r.exit_code != 0 and "torch has no int8 path" in r.output
    r = CliRunner().invoke(main, ["export-model", "--format", "onnx", "-m", str(project["model"]), "-o",
                                  str(tmp_path / "x"), "--quantize", "int8"])
    assert r.exit_code != 0 and "--quantize int8 needs --calibration DIR" in r.output
