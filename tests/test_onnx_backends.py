"""ONNX export and the onnxruntime / OpenVINO backends on tiny networks: the manifest, window
logits against torch, whole predictions against torch fp32, the refusal of networks that cannot
be converted, the precision mapping, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from oxunet.inference import InferenceError, Predictor
from oxunet.inference.backends import resolve_backend_precision
from oxunet.inference.onnx_export import (CHECK_RTOL, MANIFEST_NAME, OnnxExportError, export_network_onnx, export_onnx,
                                          load_onnx_model)
from oxunet.inference.runtime import PrecisionError

ort = pytest.importorskip("onnxruntime")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def project(project):
    """tests/conftest.py's project plus ``proj["onnx"]``, its model exported to ONNX."""
    project["onnx"] = export_onnx(project["model"], project["root"] / "onnx", exporter="torchscript").parent
    return project


def _torch(project, **kw):
    kw.setdefault("device", "cpu")
    kw.setdefault("precision", "fp32")
    return Predictor.from_model_folder(project["model"], kw.pop("folds", [0, 1]), **kw)


def test_manifest_holds_what_the_pipeline_needs(project):
    m = json.loads((project["onnx"] / MANIFEST_NAME).read_text())
    assert m["format"] == "oxunet-onnx-model" and m["opset"] == 18
    assert m["configuration"] == "3d_fullres" and m["mirror_axes"] == [0, 1, 2]
    assert [e["fold"] for e in m["folds"]] == [0, 1]
    assert all((project["onnx"] / e["file"]).is_file() and len(e["sha256"]) == 64 for e in m["folds"])
    assert m["input"]["dynamic_spatial_axes"] is True
    assert m["input"]["shape"] == ["batch", 1, "spatial_0", "spatial_1", "spatial_2"]
    assert m["input"]["patch_size"] == [16, 16, 16] and m["input"]["spatial_multiple"] == [4, 4, 4]
    assert m["output"]["num_heads"] == 4
    assert m["dataset_json"]["labels"] == project["dataset_json"]["labels"]
    assert m["plans"]["configurations"]["3d_fullres"]["patch_size"] == [16, 16, 16]
    assert all(e["max_relative_difference"] <= CHECK_RTOL for e in m["folds"])
    assert load_onnx_model(project["onnx"], [1]).folds == [1]
    with pytest.raises(InferenceError, match="no fold 3"):
        load_onnx_model(project["onnx"], [3])


def test_window_logits_agree_with_torch(project):
    """Each fold's graph on windows of the patch size and of another (dynamic) size, batch 1 and 3."""
    nets = _torch(project, tta="none").networks
    rng = np.random.default_rng(3)
    for fold, net in zip((0, 1), nets):
        sess = ort.InferenceSession(str(project["onnx"] / f"fold_{fold}.onnx"), providers=["CPUExecutionProvider"])
        for shape in [(1, 1, 16, 16, 16), (3, 1, 24, 20, 28)]:
            x = rng.standard_normal(shape).astype(np.float32)
            with torch.no_grad():
                ref = net(torch.from_numpy(x)).numpy()
            got = sess.run(["logits"], {"input": x})[0]
            assert got.shape == (shape[0], 4, *shape[2:])
            assert np.abs(got - ref).max() <= 1e-3 * np.abs(ref).max()
            assert np.abs(ref).max() > 1  # real logits, not a degenerate zero output


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_backend_logits_and_labels_match_torch_fp32(project, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    data = np.random.default_rng(1).standard_normal((1, 20, 27, 18)).astype(np.float32)  # several windows, TTA on
    ref = _torch(project, accumulator_dtype="float32").predict_logits(data)
    pred = Predictor.from_model_folder(project["onnx"], backend=backend, precision="fp32", accumulator_dtype="float32")
    assert pred.backend == backend and pred.precision == "fp32" and pred.folds == [0, 1]
    got = pred.predict_logits(data)
    assert np.abs(got - ref).max() <= 1e-3 * np.abs(ref).max()
    assert (got.argmax(0) == ref.argmax(0)).mean() >= 0.999
    case = sorted(project["test_images"].glob("*_0000.nii.gz"))
    seg_ref = _torch(project).predict_case(case).segmentation
    seg = pred.predict_case(case).segmentation
    assert seg.shape == seg_ref.shape and (seg == seg_ref).mean() >= 0.999 and len(np.unique(seg_ref)) > 1


def test_torch_folder_runs_with_another_backend(project):
    data = np.random.default_rng(2).standard_normal((1, 16, 20, 16)).astype(np.float32)
    ref = _torch(project, folds=[1], tta="none", accumulator_dtype="float32").predict_logits(data)
    pred = Predictor.from_model_folder(project["model"], [1], backend="onnxruntime", tta="none",
                                       accumulator_dtype="float32")
    assert pred.backend == "onnxruntime" and type(pred.networks[0]).__name__ == "OnnxRuntimeNetwork"
    got = pred.predict_logits(data)
    assert np.abs(got - ref).max() <= 1e-3 * np.abs(ref).max()


class _Opaque(torch.nn.Module):
    """Leaves the graph through numpy: a tracer freezes the value, so the ONNX graph is wrong."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 2, 3, padding=1)

    def forward(self, x):
        scale = float(np.abs(x.detach().numpy()).mean())
        return self.conv(x) * scale


def test_unconvertible_network_is_refused(tmp_path):
    path = tmp_path / "bad.onnx"
    with pytest.raises(OnnxExportError, match=r"fold 7: network _Opaque cannot be converted to ONNX.*differs from torch"):
        export_network_onnx(_Opaque().eval(), (8, 8, 8), 1, path, exporter="torchscript", what="fold 7")
    assert not path.exists()


def test_precision_mapping_per_runtime():
    plain = "flags\t: fpu avx2 avx512f\n"
    native = "flags\t: fpu avx2 avx512f avx512_bf16 avx512_fp16\n"
    assert resolve_backend_precision("onnxruntime", "auto", native) == "fp32"
    assert resolve_backend_precision("onnxruntime", "fp32", native) == "fp32"
    with pytest.raises(PrecisionError, match="onnxruntime runs fp32 only"):
        resolve_backend_precision("onnxruntime", "bf16", native)
    assert resolve_backend_precision("openvino", "auto", native) == "bf16"
    assert resolve_backend_precision("openvino", "auto", plain) == "fp32"
    assert resolve_backend_precision("openvino", "fp16", native) == "fp16"
    with pytest.raises(PrecisionError, match="AVX512-FP16"):
        resolve_backend_precision("openvino", "fp16", plain)
    with pytest.raises(InferenceError, match="backend must be one of"):
        resolve_backend_precision("tensorrt", "fp32", plain)


def test_openvino_bf16_stays_close(project):
    pytest.importorskip("openvino")
    from oxunet.inference.runtime import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        pytest.skip("no native bf16 on this CPU")
    data = np.random.default_rng(4).standard_normal((1, 16, 16, 16)).astype(np.float32)
    ref = _torch(project, tta="none", accumulator_dtype="float32").predict_logits(data)
    got = Predictor.from_model_folder(project["onnx"], backend="openvino", precision="bf16", tta="none",
                                      accumulator_dtype="float32").predict_logits(data)
    assert 0 < np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()  # bf16 really ran, and stayed close
    assert (got.argmax(0) == ref.argmax(0)).mean() >= 0.98


def test_cli_export_onnx_and_predict(project, tmp_path):
    from click.testing import CliRunner

    from oxunet.cli import main

    out = tmp_path / "exported"
    r = CliRunner().invoke(main, ["export-model", "--format", "onnx", "-m", str(project["model"]), "-o", str(out),
                                  "-f", "1", "--exporter", "torchscript", "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / MANIFEST_NAME).read_text())["folds"][0]["fold"] == 1
    pred_dir = tmp_path / "pred"
    r = CliRunner().invoke(main, ["predict", "-i", str(project["test_images"]), "-o", str(pred_dir), "-m", str(out),
                                  "--tta", "none", "-npp", "0", "-nps", "0", "--save-uncertainty", "--quiet"])
    assert r.exit_code == 0, r.output
    report = json.loads((pred_dir / "prediction_report.json").read_text())
    assert report["model"]["backend"] == "onnxruntime" and report["model"]["precision"] == "fp32"
    case = report["cases"][0]["case"]
    # one member (one fold, no TTA): an entropy map, no disagreement map
    assert (pred_dir / f"{case}_entropy.nii.gz").is_file() and not (pred_dir / f"{case}_disagreement.nii.gz").exists()
    assert 0 < report["cases"][0]["uncertainty"]["mean_entropy"] < 1
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(pred_dir / f"{case}.nii.gz")))
    ref = _torch(project, folds=[1], tta="none").predict_case(sorted(project["test_images"].glob("*_0000.nii.gz")))
    assert (got == ref.segmentation).mean() >= 0.999
    r = CliRunner().invoke(main, ["predict", "-i", str(project["test_images"]), "-o", str(tmp_path / "p2"), "-m",
                                  str(out), "--backend", "onnxruntime", "--precision", "bf16", "--quiet"])
    assert r.exit_code != 0 and "fp32 only" in r.output


def test_default_exporter_is_torch_export(project, tmp_path):
    """The default (dynamo, torch.export-based) exporter also gives dynamic axes and agreeing logits."""
    pytest.importorskip("onnxscript")
    m = json.loads(export_onnx(project["model"], tmp_path / "dyn", [0]).read_text())
    assert m["exporter"] == "dynamo" and m["input"]["dynamic_spatial_axes"] is True
    assert m["folds"][0]["max_relative_difference"] <= CHECK_RTOL
    data = np.random.default_rng(5).standard_normal((1, 16, 20, 24)).astype(np.float32)
    ref = _torch(project, folds=[0], tta="none", accumulator_dtype="float32").predict_logits(data)
    got = Predictor.from_model_folder(tmp_path / "dyn", tta="none", accumulator_dtype="float32").predict_logits(data)
    assert np.abs(got - ref).max() <= 1e-3 * np.abs(ref).max()


def test_signal_stack_guard_restores_the_previous_stack():
    import ctypes

    from oxunet.inference.signal_stack import _StackT, current_signal_stack, keep_signal_stack

    before = current_signal_stack()
    if before is None:
        pytest.skip("sigaltstack is only queried on Linux")
    buf = ctypes.create_string_buffer(1 << 16)
    with keep_signal_stack():
        mine = _StackT(ctypes.cast(buf, ctypes.c_void_p), 0, len(buf))
        assert ctypes.CDLL(None).sigaltstack(ctypes.byref(mine), None) == 0
        assert current_signal_stack()[:2] == (ctypes.addressof(buf), len(buf))
    assert current_signal_stack() == before


def test_openvino_networks_leave_no_dangling_signal_stack(project, tmp_path):
    """Two OpenVINO networks freed in creation order used to leave the thread on an unmapped
    signal stack: the next SIGCHLD handled by Python (torch's DataLoader installs one) segfaulted."""
    pytest.importorskip("openvino")
    import subprocess
    import sys

    onnx = sorted(project["onnx"].glob("fold_*.onnx"))[0]
    patch = project["plans"]["configurations"]["3d_fullres"]["patch_size"]
    script = (
        "import faulthandler, gc, signal, subprocess, sys\n"
        "faulthandler.enable()\n"
        "signal.signal(signal.SIGCHLD, lambda *a: None)\n"
        "from oxunet.inference.backends import OpenVinoNetwork\n"
        "from oxunet.inference.signal_stack import current_signal_stack\n"
        "before = current_signal_stack()\n"
        "import numpy as np\n"
        f"a = OpenVinoNetwork({str(onnx)!r}, threads=1)\n"
        f"b = OpenVinoNetwork({str(onnx)!r}, threads=1)\n"
        f"x = np.zeros((1, 1, {', '.join(str(int(p)) for p in patch)}), np.float32)\n"
        "a.run_numpy(x); b.run_numpy(x)\n"
        "del a; gc.collect(); del b; gc.collect()\n"
        "assert current_signal_stack() == before, (before, current_signal_stack())\n"
        "subprocess.run([sys.executable, '-c', 'pass'], check=True)\n"
        "print('alive')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "alive", (out.returncode, out.stderr[-2000:])


_NO_TORCH = """
import json, sys
class _NoTorch:  # as if torch were not installed
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return None
sys.meta_path.insert(0, _NoTorch())
import numpy as np
from oxunet.inference import Predictor
model, case, out = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
pred = Predictor.from_model_folder(model, backend="onnxruntime", precision="fp32")
res = pred.predict_case(case, out, save_probabilities=True)
np.save(out + ".seg.npy", res.segmentation)
print(json.dumps({"torch_imported": "torch" in sys.modules, "device": str(pred.device)}))
"""


def test_onnx_model_predicts_without_torch(project, tmp_path):
    """An ONNX export runs where torch is not installed (numpy windows, casts and softmax), with
    the labels and probabilities of the same runtime in a process that has torch."""
    import subprocess
    import sys

    case = [str(f) for f in sorted(project["test_images"].glob("*_0000.nii.gz"))[:1]]
    out = str(tmp_path / "no_torch.nii.gz")
    run = subprocess.run([sys.executable, "-c", _NO_TORCH, str(project["onnx"]), *case, out],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads(run.stdout.strip().splitlines()[-1])
    assert info == {"torch_imported": False, "device": "cpu"}
    ref_out = tmp_path / "with_torch.nii.gz"
    ref = Predictor.from_model_folder(project["onnx"], backend="onnxruntime", precision="fp32").predict_case(
        case, ref_out, save_probabilities=True)
    seg = np.load(out + ".seg.npy")
    assert seg.shape == ref.segmentation.shape and len(np.unique(seg)) > 1
    assert (seg == ref.segmentation).all()
    assert sitk.GetArrayFromImage(sitk.ReadImage(out)).tolist() == sitk.GetArrayFromImage(
        sitk.ReadImage(str(ref_out))).tolist()
    got = np.load(str(tmp_path / "no_torch.npz"))["probabilities"]
    want = np.load(str(tmp_path / "with_torch.npz"))["probabilities"]
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-6
