"""bf16 (or fp16) against fp32 prediction with a trained model: voxel agreement, Dice of each
against the labels, and time. Shows whether reduced precision is accurate for *this* model
(random weights give near-tied logits and understate agreement).

    python3 benches/precision_agreement.py --model RESULTS/Dataset004_Hippocampus/TRAINER__PLANS__3d_fullres \\
        --raw RAW/Dataset004_Hippocampus --fold 0 --cases 20

Cases: the fold's validation cases (from the model's splits_final.json beside the preprocessed
data if given with --splits, else the first --cases images of imagesTr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--raw", type=Path, required=True, help="raw dataset folder (imagesTr, labelsTr)")
    ap.add_argument("--splits", type=Path, help="splits_final.json: use this fold's validation cases")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    args = ap.parse_args()

    import SimpleITK as sitk

    from oxunet.dataset.dataset_json import load_dataset_json
    from oxunet.evaluation.metrics import compute_metrics
    from oxunet.inference import Predictor

    ds = load_dataset_json(args.model / "dataset.json")
    ending = ds.file_ending
    if args.splits:
        cases = json.loads(args.splits.read_text())[args.fold]["val"][: args.cases]
    else:
        cases = sorted(p.name[: -len("_0000" + ending)] for p in (args.raw / "imagesTr").glob(f"*_0000{ending}"))
        cases = cases[: args.cases]
    n_ch = ds.num_channels
    preds, secs = {}, {}
    for prec in ("fp32", args.precision):
        p = Predictor.from_model_folder(args.model, folds=[args.fold], device="cpu", precision=prec, quiet=True)
        t = time.perf_counter()
        preds[prec] = {c: p.predict_case([args.raw / "imagesTr" / f"{c}_{i:04d}{ending}" for i in range(n_ch)]).segmentation
                       for c in cases}
        secs[prec] = time.perf_counter() - t
        print(f"{prec}: {secs[prec]:.1f} s for {len(cases)} cases", flush=True)
    labels = ds.foreground_regions if ds.has_regions else ds.foreground_labels
    agree, dice = [], {k: [] for k in preds}
    for c in cases:
        a, b = preds["fp32"][c], preds[args.precision][c]
        agree.append(float((a == b).mean()))
        gt = sitk.GetArrayFromImage(sitk.ReadImage(str(args.raw / "labelsTr" / f"{c}{ending}")))
        for k in preds:  # nnU-Net's Dice (NaN where a label is in neither), averaged over labels
            per_label = compute_metrics(gt, preds[k][c], labels, ds.ignore_label)
            dice[k].append(float(np.nanmean([m["Dice"] for m in per_label.values()])))
    report = {"cases": len(cases), "precision": args.precision, "voxel_agreement_mean": float(np.mean(agree)),
              "voxel_agreement_min": float(np.min(agree)), "mean_dice_fp32": float(np.mean(dice["fp32"])),
              f"mean_dice_{args.precision}": float(np.mean(dice[args.precision])), "seconds": secs}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
