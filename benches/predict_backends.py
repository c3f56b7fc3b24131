"""CPU backends side by side on a trained model: seconds per case, peak RSS, agreement, Dice.

Issue 14's table: a trained Hippocampus model (e.g. fold 0 of ``benches/train_accuracy.py``),
mirroring TTA on, N validation cases of that fold, every backend and precision, and nnunetv2
predicting the same folder with the same model folder. Each run is one CLI command as a user
types it (``oxunet predict`` / ``nnUNetv2_predict_from_modelfolder`` with its default worker
pools), in its own process tree, one after another:

- ``s_per_case``: the command's wall time / N (imports and model loading included, so a
  folder of N cases is what is compared); ``case_s_median``: oxunet's own per-case total from
  ``prediction_report.json`` (no start-up).
- ``peak_rss_gib``: the maximum of the process tree's summed RSS, sampled every 20 ms.
- ``agreement_vs_torch_fp32``: voxels equal to oxunet torch fp32's labels, over all cases.
- ``dice``: foreground-mean Dice against the reference labels, averaged over cases.

The ONNX backends run the folder written once by ``oxunet export-model --format onnx``
(untimed, as a user exports once); with an int8 variant chosen, that export also quantises
(``--quantize int8``), calibrated on 16 training cases of the fold (from --splits: its ``train``
cases; without: labelled cases outside the evaluated ones), never on the evaluated cases.

    W=/tmp/oxacc
    python3 benches/predict_backends.py --work /tmp/predbk \\
        --model $W/oxunet/results/Dataset004_Hippocampus/oxunetBench_fp32_seed1__nnUNetPlans__3d_fullres \\
        --splits $W/oxunet/preprocessed/Dataset004_Hippocampus/splits_final.json --cases 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "python"))

VARIANTS = {  # label: (tool, backend, precision)
    "nnunetv2 fp32": ("nnunetv2", None, "fp32"),  # its default worker pools (-npp 3 -nps 3)
    "nnunetv2 fp32 -npp 1 -nps 1": ("nnunetv2", None, "fp32"),  # one worker each: less start-up on few cores
    "oxunet torch fp32": ("oxunet", "torch", "fp32"),
    "oxunet torch bf16": ("oxunet", "torch", "bf16"),
    "oxunet onnxruntime fp32": ("oxunet", "onnxruntime", "fp32"),
    "oxunet openvino fp32": ("oxunet", "openvino", "fp32"),
    "oxunet openvino bf16": ("oxunet", "openvino", "bf16"),
    "oxunet openvino int8": ("oxunet", "openvino", "int8"),
    "oxunet onnxruntime int8": ("oxunet", "onnxruntime", "int8"),
}
CALIBRATION_CASES = 16


def _dataset() -> Path:
    env = os.environ.get("OXUNET_HIPPOCAMPUS")
    for c in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data" / "Dataset004_Hippocampus"]:
        if (c / "dataset.json").is_file():
            return c
    raise SystemExit("Dataset004_Hippocampus not found: pass --dataset or set OXUNET_HIPPOCAMPUS")


def setup_cases(work: Path, dataset: Path, splits: Path | None, fold: int, n: int) -> list[str]:
    if splits is not None:
        cases = sorted(json.loads(splits.read_text())[fold]["val"])[:n]
    else:
        cases = sorted(f.name[: -len(".nii.gz")] for f in (dataset / "labelsTr").glob("*.nii.gz"))[-n:]
    inp, gt = work / "in", work / "gt"
    for d in (inp, gt):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for c in cases:
        (inp / f"{c}_0000.nii.gz").symlink_to((dataset / "imagesTr" / f"{c}_0000.nii.gz").resolve())
        (gt / f"{c}.nii.gz").symlink_to((dataset / "labelsTr" / f"{c}.nii.gz").resolve())
    return cases


def setup_calibration(work: Path, dataset: Path, splits: Path | None, fold: int, evaluated: list[str]) -> Path:
    """A folder of CALIBRATION_CASES training images (symlinks) for the int8 export."""
    if splits is not None:
        train = sorted(json.loads(splits.read_text())[fold]["train"])
    else:
        train = sorted(f.name[: -len(".nii.gz")] for f in (dataset / "labelsTr").glob("*.nii.gz"))
    train = [c for c in train if c not in set(evaluated)][:CALIBRATION_CASES]
    calib = work / "calibration"
    shutil.rmtree(calib, ignore_errors=True)
    calib.mkdir(parents=True)
    for c in train:
        (calib / f"{c}_0000.nii.gz").symlink_to((dataset / "imagesTr" / f"{c}_0000.nii.gz").resolve())
    return calib


def export_onnx_once(onnx_dir: Path, model: Path, fold: int, checkpoint: str, calibration: Path | None, env: dict) -> None:
    """Untimed: the ONNX export (with int8 models when `calibration` is given), skipped when present."""
    manifest = onnx_dir / "oxunet_model.json"
    if manifest.is_file() and (calibration is None or "quantization" in json.loads(manifest.read_text())):
        return
    cmd = [sys.executable, "-m", "oxunet.cli", "export-model", "--format", "onnx", "-m", str(model), "-f", str(fold),
           "-chk", checkpoint, "-o", str(onnx_dir)]
    if calibration is not None:
        cmd += ["--quantize", "int8", "--calibration", str(calibration), "--calibration-cases", str(CALIBRATION_CASES)]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    print(f"ONNX export{' + int8 calibration' if calibration else ''}: {time.perf_counter() - t0:.1f} s", flush=True)


def nnunet_model_copy(model: Path, work: Path, checkpoint: str, fold: int) -> Path:
    """The model folder as every tool reads it: a copy whose checkpoint names nnU-Net's base trainer
    (a trainer name of ours, e.g. a benchmark's, means nothing to nnunetv2; inference is the same)."""
    import torch

    from oxunet.networks import load_nnunet_checkpoint

    trainer, plans, config = model.name.split("__")
    dst = work / "model" / f"nnUNetTrainer__{plans}__{config}"
    if (dst / f"fold_{fold}" / checkpoint).is_file():
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    (dst / f"fold_{fold}").mkdir(parents=True)
    for f in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        if (model / f).is_file():
            shutil.copy(model / f, dst / f)
    ckpt = load_nnunet_checkpoint(model / f"fold_{fold}" / checkpoint)
    ckpt["trainer_name"] = "nnUNetTrainer"
    torch.save(ckpt, dst / f"fold_{fold}" / checkpoint)
    return dst


def run_tree(cmd: list[str], env: dict) -> dict:
    """Runs `cmd`, sampling its process tree's RSS; returns wall seconds, peak RSS and the tail of its output."""
    import threading

    from oxunet.inference.runtime import tree_rss_bytes

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout or ()), daemon=True)
    reader.start()
    while proc.poll() is None:
        peak = max(peak, tree_rss_bytes(proc.pid))
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    reader.join(5)
    return {"wall_s": wall, "peak_rss_bytes": peak, "rc": proc.returncode, "tail": "".join(out)[-1500:]}


def _labels(folder: Path, case: str):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{case}.nii.gz")))


def _dice(pred, ref, labels) -> float:
    import numpy as np

    vals = []
    for lab in labels:
        p, r = pred == lab, ref == lab
        denom = int(p.sum()) + int(r.sum())
        vals.append(1.0 if denom == 0 else 2.0 * int(np.logical_and(p, r).sum()) / denom)
    return float(np.mean(vals))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True, help="trained-model folder TRAINER__PLANS__CONFIG")
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--splits", type=Path, help="splits_final.json: the cases are the fold's validation cases")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--checkpoint", default="checkpoint_final.pth")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated labels of: " + ", ".join(VARIANTS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import numpy as np

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cases = setup_cases(work, args.dataset or _dataset(), args.splits, args.fold, args.cases)
    labels = [1, 2]
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    args.model = nnunet_model_copy(args.model.resolve(), work, args.checkpoint, args.fold)
    onnx_dir = work / "onnx"
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    if any(VARIANTS[v][1] in ("onnxruntime", "openvino") for v in chosen):
        calibration = None
        if any(VARIANTS[v][2] == "int8" for v in chosen):
            calibration = setup_calibration(work, args.dataset or _dataset(), args.splits, args.fold, cases)
        export_onnx_once(onnx_dir, args.model, args.fold, args.checkpoint, calibration, env)
    results: dict[str, dict] = {}
    for label in chosen:
        tool, backend, precision = VARIANTS[label]
        out = work / "out" / label.replace(" ", "_")
        shutil.rmtree(out, ignore_errors=True)
        if tool == "nnunetv2":
            cmd = [shutil.which("nnUNetv2_predict_from_modelfolder") or "nnUNetv2_predict_from_modelfolder",
                   "-i", str(work / "in"), "-o", str(out), "-m", str(args.model), "-f", str(args.fold),
                   "-device", "cpu", "-chk", args.checkpoint, "--disable_progress_bar"]
            if "-npp 1" in label:
                cmd += ["-npp", "1", "-nps", "1"]
        else:
            onnx = backend in ("onnxruntime", "openvino")
            cmd = [sys.executable, "-m", "oxunet.cli", "predict", "-i", str(work / "in"), "-o", str(out), "-m",
                   str(onnx_dir if onnx else args.model), "-f", str(args.fold), "--device", "cpu", "--precision",
                   precision, "--backend", backend, "--quiet"] + ([] if onnx else ["-chk", args.checkpoint])
        print(f"{label}: {' '.join(cmd)}", flush=True)
        r = run_tree(cmd, env)
        entry = {"s_per_case": r["wall_s"] / len(cases), "wall_s": r["wall_s"],
                 "peak_rss_gib": r["peak_rss_bytes"] / 2**30, "command": " ".join(cmd)}
        if r["rc"] != 0:
            entry["error"] = r["tail"]
        report = out / "prediction_report.json"
        if report.is_file():
            per_case = [c["seconds"]["total"] for c in json.loads(report.read_text())["cases"]
                        if "total" in c.get("seconds", {})]
            if per_case:
                entry["case_s_median"] = statistics.median(per_case)
        results[label] = entry
        print(json.dumps({label: {k: v for k, v in entry.items() if k != "command"}}), flush=True)
    ref_dir = work / "out" / "oxunet_torch_fp32"
    for label, entry in results.items():
        out = work / "out" / label.replace(" ", "_")
        if "error" in entry or not all((out / f"{c}.nii.gz").is_file() for c in cases):
            continue
        same = total = 0
        dices = []
        for c in cases:
            pred = _labels(out, c)
            dices.append(_dice(pred, _labels(work / "gt", c), labels))
            if (ref_dir / f"{c}.nii.gz").is_file():
                ref = _labels(ref_dir, c)
                same += int((pred == ref).sum())
                total += ref.size
        entry["dice"] = float(np.mean(dices))
        if total:
            entry["agreement_vs_torch_fp32"] = same / total
    base = results.get("nnunetv2 fp32", {}).get("s_per_case")
    for entry in results.values():
        if base and "error" not in entry:
            entry["speedup_vs_nnunetv2"] = base / entry["s_per_case"]
    import platform

    import torch

    doc = {"cases": cases, "fold": args.fold, "model": str(args.model), "tta": "all (the model's mirror axes)",
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
           "results": results}
    text = json.dumps(doc, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
