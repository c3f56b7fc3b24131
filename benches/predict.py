"""Per-case prediction time and peak memory: oxunet vs nnunetv2, same model folder, this CPU.

Cases: a Hippocampus case (the real plan's 3d_fullres network, random-but-fixed weights, TTA on)
and a synthetic CT-like case (512×512×200 at spacing 3.0×0.78×0.78, plan spacing 2.0×1.0×1.0,
small 4-stage network, 21 classes, TTA off). ``--quick``: 160×160×60 for a sanity run;
``--ct-classes 51 --ct-slices 400`` for the many-class memory case.

Each predictor runs in its own process, sequentially (no worker pools), so stages are timed
cleanly: preprocessing / network / aggregation / export (nnunetv2: network = the forward calls,
aggregation = the rest of its sliding window incl. flips). Both preprocess the case once untimed
first (imports, thread pools), as in a folder of many cases. The CT case also runs oxunet with the
slab-wise export forced on and off ("stream" / "whole"); "auto" streams above 1 GiB of logits. Peak RSS is the maximum of the process
tree's summed RSS, sampled every 20 ms by the parent (plus the child's own VmHWM).

    PYTHONPATH=python python3 benches/predict.py [--quick] [--only hippocampus|ct] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))
sys.path.insert(0, str(HERE.parent / "tests"))


# ------------------------------------------------------------------------------------------ setup


def _hippocampus_setup(work: Path) -> tuple[Path, Path]:
    from inference_models import write_model_folder
    from synthetic import copy_dataset_subset, find_shared_dataset

    from oxunet.dataset import resolve_paths
    from oxunet.planning import plan_experiment

    src = find_shared_dataset("Dataset004_Hippocampus") or (Path(os.environ["OXUNET_HIPPOCAMPUS"])
                                                            if os.environ.get("OXUNET_HIPPOCAMPUS") else None)
    if src is None:
        raise SystemExit("Hippocampus not found (shared/data or $OXUNET_HIPPOCAMPUS)")
    raw = work / "raw" / "Dataset004_Hippocampus"
    copy_dataset_subset(src, raw, 6)
    paths = resolve_paths(raw_dir=work / "raw", preprocessed_dir=work / "pre", results_dir=work / "res", environ={})
    plans = plan_experiment("4", paths, quiet=True, num_processes=1)
    ds = json.loads((raw / "dataset.json").read_text())
    model = write_model_folder(work / "models" / "hippo" / "nnUNetTrainer__nnUNetPlans__3d_fullres", plans, ds,
                               "3d_fullres", nnunet=False, seed=0)
    inp = work / "in_hippo"
    inp.mkdir()
    case = sorted((src / "imagesTr").glob("*_0000.nii.gz"))[-1]  # not among the planning cases
    shutil.copy(case, inp / case.name)
    return model, inp


def _ct_setup(work: Path, quick: bool, hippo_model: Path, classes: int = 21, slices: int = 200,
              isotropic: bool = False) -> tuple[Path, Path]:
    import numpy as np
    import SimpleITK as sitk

    from inference_models import write_model_folder
    from synthetic import body_case

    plans = json.loads((hippo_model / "plans.json").read_text())
    c = plans["configurations"]["3d_fullres"]
    # isotropic: plan 1.5 mm from 1.0 x 0.8 x 0.8 mm, every axis (axis 0 too) resampled jointly at order 1
    c["spacing"] = [1.5, 1.5, 1.5] if isotropic else [2.0, 1.0, 1.0]
    c["patch_size"] = [48, 96, 96] if quick else [64, 128, 128]
    n = c["architecture"]["arch_kwargs"]["n_stages"]
    c["architecture"]["arch_kwargs"]["features_per_stage"] = [8 * 2 ** i for i in range(n)]
    plans["transpose_forward"], plans["transpose_backward"] = [0, 1, 2], [0, 1, 2]
    labels = classes - 1
    ds = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, **{f"organ{i}": i for i in range(1, labels + 1)}},
          "numTraining": 1, "file_ending": ".nii.gz"}
    model = write_model_folder(work / "models" / "ct" / "nnUNetTrainer__nnUNetPlans__3d_fullres", plans, ds,
                               "3d_fullres", nnunet=False, seed=1, mirror_axes=(0, 1, 2))
    shape = (60, 160, 160) if quick else (slices, 512, 512)
    img, _ = body_case(shape, np.random.default_rng(0), labels=labels)
    im = sitk.GetImageFromArray(img)
    im.SetSpacing((0.8, 0.8, 1.0) if isotropic else (0.78, 0.78, 3.0))
    im.SetOrigin((-200.0, -180.0, 50.0))
    inp = work / "in_ct"
    inp.mkdir()
    sitk.WriteImage(im, str(inp / "ct_000_0000.nii.gz"))
    return model, inp


# ------------------------------------------------------------------------------------------ workers


def _trivial_network(heads: int):
    """A 1×1×1 convolution: isolates the non-network stages (``--trivial-net``)."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Conv3d(1, heads, 1).eval()


def worker_ours(model: str, inp: str, out: str, tta: str, precision: str, streaming: str, trivial: bool = False,
                backend: str = "torch", save_probabilities: bool = False) -> dict:
    from oxunet.inference import Predictor

    # another backend: the torch networks are converted to ONNX here, before the timed case
    p = Predictor.from_model_folder(model, device="cpu", precision=precision, tta=tta, quiet=True,
                                    streaming={"auto": "auto", "on": True, "off": False}[streaming], backend=backend)
    if trivial:
        p.sliding.networks = [_trivial_network(p.dataset.num_segmentation_heads)]
    files = sorted(Path(inp).glob("*_0000.nii.gz"))
    p.preprocess(files)  # warm-up (imports, thread pools): per-case times as in a folder of many cases
    t0 = time.perf_counter()
    res = p.predict_case(files, Path(out) / files[0].name.replace("_0000.nii.gz", ""),
                         save_probabilities=save_probabilities)
    times = dict(res.times)
    times["total"] = time.perf_counter() - t0
    return {"times": times, "precision": p.precision, "backend": p.backend, "streaming": res.streaming,
            "note": res.streaming_note}


def worker_nnunet(model: str, inp: str, out: str, tta: str, trivial: bool = False,
                  save_probabilities: bool = False) -> dict:
    import torch
    from nnunetv2.inference.export_prediction import export_prediction_from_logits
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    p = nnUNetPredictor(0.5, True, tta != "none", False, torch.device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(model, None, "checkpoint_final.pth")
    if trivial:
        p.network = _trivial_network(p.label_manager.num_segmentation_heads)
        p.list_of_parameters = [p.network.state_dict()]
    files = sorted(Path(inp).glob("*_0000.nii.gz"))
    net_time = [0.0]
    starts: list[float] = []
    p.network.register_forward_pre_hook(lambda m, a: starts.append(time.perf_counter()))
    p.network.register_forward_hook(lambda m, a, o: net_time.__setitem__(0, net_time[0] + time.perf_counter() - starts.pop()))
    times = {}
    pre = p.configuration_manager.preprocessor_class(verbose=False)
    pre.run_case([str(f) for f in files], None, p.plans_manager, p.configuration_manager, p.dataset_json)  # warm-up
    t0 = time.perf_counter()
    data, _, props = pre.run_case([str(f) for f in files], None, p.plans_manager, p.configuration_manager, p.dataset_json)
    t1 = time.perf_counter()
    logits = p.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
    t2 = time.perf_counter()
    export_prediction_from_logits(logits, props, p.configuration_manager, p.plans_manager, p.dataset_json,
                                  str(Path(out) / files[0].name.replace("_0000.nii.gz", "")), save_probabilities)
    t3 = time.perf_counter()
    times.update(preprocessing=t1 - t0, network=net_time[0], aggregation=(t2 - t1) - net_time[0], export=t3 - t2,
                 total=t3 - t0)
    return {"times": times, "precision": "fp32"}


def _child_main(argv):
    kind, payload = argv[0], json.loads(argv[1])
    res = worker_ours(**payload) if kind == "ours" else worker_nnunet(**payload)
    from oxunet.inference.runtime import peak_rss_bytes

    res["own_peak_rss_bytes"] = peak_rss_bytes()
    print("RESULT " + json.dumps(res), flush=True)


# ------------------------------------------------------------------------------------------ driver


def run_child(kind: str, payload: dict, rss_limit_gib: float | None = None) -> dict:
    """Runs one predictor in a child process; with `rss_limit_gib`, a child whose process tree
    grows past it is killed (and reported so) before the machine runs out of memory."""
    from oxunet.inference.runtime import tree_rss_bytes

    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "python"))
    out_file = tempfile.TemporaryFile(mode="w+")  # not a pipe: a killed child must not block us
    proc = subprocess.Popen([sys.executable, __file__, "--child", kind, json.dumps(payload)], stdout=out_file,
                            stderr=subprocess.STDOUT, text=True, env=env)
    peak, killed = 0, False
    limit = None if rss_limit_gib is None else rss_limit_gib * 2**30
    while proc.poll() is None:
        peak = max(peak, tree_rss_bytes(proc.pid))
        if limit is not None and peak > limit:
            proc.kill()
            proc.wait()
            killed = True
            break
        time.sleep(0.02)
    if killed:
        return {"error": f"killed: process tree RSS passed the {rss_limit_gib:g} GiB limit", "tree_peak_rss_bytes": peak,
                "exceeded_rss_limit_gib": rss_limit_gib}
    out_file.seek(0)
    out = out_file.read()
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        return {"error": f"exit {proc.returncode}: {out[-2000:]}", "tree_peak_rss_bytes": peak}
    res = json.loads(line[-1][len("RESULT "):])
    res["tree_peak_rss_bytes"] = peak
    return res


def _agreement(a: Path, b: Path) -> float | None:
    import SimpleITK as sitk

    if not (a.is_file() and b.is_file()):
        return None
    x, y = sitk.GetArrayFromImage(sitk.ReadImage(str(a))), sitk.GetArrayFromImage(sitk.ReadImage(str(b)))
    return float((x == y).mean()) if x.shape == y.shape else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["hippocampus", "ct"])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--skip-nnunet", action="store_true")
    ap.add_argument("--variants", default="", help="comma-separated run labels to keep, e.g. 'oxunet auto,nnunetv2 fp32'")
    ap.add_argument("--trivial-net", action="store_true", help="CT case: a 1x1x1 convolution instead of the U-Net "
                    "(measures preprocessing/aggregation/export and memory without the network's cost)")
    ap.add_argument("--ct-classes", type=int, default=21, help="CT case: classes incl. background (memory: try 51)")
    ap.add_argument("--ct-slices", type=int, default=200, help="CT case: slices of 512x512 (memory: try 400)")
    ap.add_argument("--backends", default="", help="also run these CPU backends, e.g. 'onnxruntime,openvino' "
                    "(each in fp32; openvino also in bf16 where the CPU has it); voxel agreement with oxunet fp32")
    ap.add_argument("--ct-isotropic", action="store_true", help="CT case: 1.0x0.8x0.8 mm resampled to a 1.5 mm "
                    "isotropic plan (axis 0 changes size, linear interpolation jointly over all axes)")
    ap.add_argument("--save-probabilities", action="store_true", help="CT case: also write the probabilities (.npz)")
    ap.add_argument("--rss-limit-gib", type=float, default=None,
                    help="kill a predictor whose process tree RSS passes this (report it as over the limit)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="oxunet_bench_predict_"))
    results = {}
    try:
        hippo_model, hippo_in = _hippocampus_setup(work)
        cases = {}
        if args.only in (None, "hippocampus"):
            cases["hippocampus"] = (hippo_model, hippo_in, "all")
        if args.only in (None, "ct"):
            ct_model, ct_in = _ct_setup(work, args.quick, hippo_model, args.ct_classes, args.ct_slices,
                                        args.ct_isotropic)
            cases["ct"] = (ct_model, ct_in, "none")
        for name, (model, inp, tta) in cases.items():
            runs = {"oxunet auto": ("ours", dict(precision="auto", streaming="auto")),
                    "oxunet fp32": ("ours", dict(precision="fp32", streaming="auto"))}
            for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
                runs[f"{backend} fp32"] = ("ours", dict(precision="fp32", streaming="auto", backend=backend))
                if backend == "openvino":
                    from oxunet.inference.runtime import cpu_has_native_bf16

                    if cpu_has_native_bf16():
                        runs["openvino bf16"] = ("ours", dict(precision="bf16", streaming="auto", backend=backend))
            if name == "ct":
                runs["oxunet auto stream"] = ("ours", dict(precision="auto", streaming="on"))
                runs["oxunet auto whole"] = ("ours", dict(precision="auto", streaming="off"))
            if not args.skip_nnunet:
                runs["nnunetv2 fp32"] = ("nnunet", {})
            if args.variants:
                keep = {v.strip() for v in args.variants.split(",")}
                runs = {k: v for k, v in runs.items() if k in keep}
            if name == "ct" and args.trivial_net:
                for kind, extra in runs.values():
                    extra["trivial"] = True
            if name == "ct" and args.save_probabilities:
                for kind, extra in runs.values():
                    extra["save_probabilities"] = True
            results[name] = {}
            for label, (kind, extra) in runs.items():
                out = work / "out" / name / label.replace(" ", "_")
                out.mkdir(parents=True)
                payload = dict(model=str(model), inp=str(inp), out=str(out), tta=tta, **extra)
                results[name][label] = run_child(kind, payload, args.rss_limit_gib)
                results[name][label]["output"] = str(out)
                print(f"{name:12s} {label:19s} {_fmt(results[name][label])}", flush=True)
            if "oxunet fp32" in results[name]:
                seg = next(Path(inp).glob("*_0000.nii.gz")).name.replace("_0000", "")
                for label in [k for k in runs if not k.startswith(("oxunet", "nnunetv2"))]:
                    agree = _agreement(Path(results[name][label]["output"]) / seg,
                                       Path(results[name]["oxunet fp32"]["output"]) / seg)
                    results[name][label]["agreement_with_oxunet_fp32"] = agree
                    print(f"{name:12s} {label:19s} voxel agreement with oxunet fp32 (torch): {agree}")
            if "nnunetv2 fp32" in results[name]:
                seg = next(Path(inp).glob("*_0000.nii.gz")).name.replace("_0000", "")
                for label in [k for k in runs if not k.startswith("nnunetv2")]:
                    agree = _agreement(Path(results[name][label]["output"]) / seg,
                                       Path(results[name]["nnunetv2 fp32"]["output"]) / seg)
                    results[name][label]["agreement_with_nnunetv2"] = agree
                    print(f"{name:12s} {label:19s} voxel agreement with nnunetv2: {agree}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _fmt(r: dict) -> str:
    if "error" in r:
        return "ERROR " + r["error"].splitlines()[-1] if r["error"].splitlines() else r["error"]
    t = r["times"]
    parts = " ".join(f"{k} {t.get(k, 0):7.2f}s" for k in ("preprocessing", "network", "aggregation", "export", "total"))
    extra = f" streaming={r['streaming']}" if "streaming" in r else ""
    return f"{parts}  peak RSS (tree) {r['tree_peak_rss_bytes'] / 2**30:5.2f} GiB  [{r['precision']}{extra}]"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_main(sys.argv[2:])
    else:
        main()
