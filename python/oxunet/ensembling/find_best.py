"""nnU-Net's ``find_best_configuration``: evaluate every trained model's cross-validation, every
pair's ensemble, pick the best by foreground mean Dice, decide postprocessing on it, and write
the exact oxunet commands that reproduce the chosen inference."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..evaluation import evaluate_folder_from_dataset_json, load_summary, write_json
from ..evaluation.folder import list_files
from .ensemble import EnsembleError, _num_heads, merge_case
from ..errors import OxunetError

DEFAULT_CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")


class FindBestError(OxunetError, RuntimeError):
    """A requested model is missing or incomplete."""


def folds_string(folds: Sequence) -> str:
    return "_".join(str(f) for f in folds)


def model_identifier(trainer: str, plans: str, configuration: str) -> str:
    return f"{trainer}__{plans}__{configuration}"


def _configuration(plans: dict, name: str) -> dict | None:
    """The configuration with ``inherits_from`` resolved (None when the plans lack it)."""
    configs = plans.get("configurations", {})
    if name not in configs:
        return None
    cfg, seen = dict(configs[name]), {name}
    parent = cfg.get("inherits_from")
    while parent and parent in configs and parent not in seen:
        seen.add(parent)
        cfg = {**configs[parent], **cfg}
        parent = configs[parent].get("inherits_from")
    return cfg


def accumulate_cv_results(model_dir: Path, merged_dir: Path, folds: Sequence, gt_dir: Path,
                          num_processes: int, overwrite: bool = True, quiet: bool = False) -> dict:
    """Copies every ``fold_f/validation/*{ending}`` into ``merged_dir`` (two folds predicting one
    case is an error) and evaluates it against ``gt_dir``; returns the summary."""
    if overwrite and merged_dir.is_dir():
        shutil.rmtree(merged_dir)
    merged_dir.mkdir(parents=True, exist_ok=True)
    ds = json.loads((model_dir / "dataset.json").read_text())
    for name in ("dataset.json", "plans.json"):
        shutil.copy(model_dir / name, merged_dir / name)
    copied = False
    for f in folds:
        val = model_dir / f"fold_{f}" / "validation"
        if not val.is_dir():
            raise FindBestError(f"{val}: fold {f} of {model_dir.name} has no validation folder (train and validate it)")
        for name in list_files(val, ds["file_ending"]):
            if overwrite and (merged_dir / name).is_file():
                raise FindBestError(f"{model_dir.name}: more than one fold predicts case {name}")
            if overwrite or not (merged_dir / name).is_file():
                shutil.copy(val / name, merged_dir / name)
                copied = True
    if copied or not (merged_dir / "summary.json").is_file():
        return evaluate_folder_from_dataset_json(gt_dir, merged_dir, ds, merged_dir / "plans.json",
                                                 num_processes=num_processes, chill=True, quiet=quiet)
    return load_summary(merged_dir / "summary.json")


def ensemble_crossvalidations(model_dirs: Sequence[Path], output_dir: Path, folds: Sequence, num_processes: int,
                              overwrite: bool = True, quiet: bool = False) -> None:
    """Ensembles the validation probabilities (``fold_f/validation/*.npz``) of several models."""
    from .._workers import map_cases
    from ..postprocessing.folder import reader_for

    ds = json.loads((model_dirs[0] / "dataset.json").read_text())
    plans = json.loads((model_dirs[0] / "plans.json").read_text())
    mappings = []
    for m in model_dirs:
        mapping: dict[str, Path] = {}
        for f in folds:
            val = m / f"fold_{f}" / "validation"
            if not val.is_dir():
                raise FindBestError(f"{val}: missing; train and validate every requested fold")
            npz = sorted(p.name for p in val.glob("*.npz"))
            if not npz:
                raise FindBestError(f"{val}: no .npz files; validate with --npz to allow ensembling")
            for n in npz:
                if n in mapping:
                    raise FindBestError(f"{m.name}: case {n} is present in more than one fold")
                mapping[n] = val / n
        mappings.append(mapping)
    every = set().union(*(set(mp) for mp in mappings))
    for m, mp in zip(model_dirs, mappings):
        missing = sorted(every - set(mp))
        if missing:
            raise FindBestError(f"{m.name}: missing validation probabilities for {', '.join(missing[:5])}")
    output_dir.mkdir(parents=True, exist_ok=True)
    num_heads, rco = _num_heads(ds)
    writer = reader_for(plans, ds)
    jobs = []
    for case in sorted(every):
        stem = str(output_dir / case[: -len(".npz")])
        if not overwrite and os.path.isfile(stem + ds["file_ending"]):
            continue
        jobs.append(([str(mp[case]) for mp in mappings], stem, ds["file_ending"], writer, rco, num_heads, False))
    map_cases(merge_case, jobs, num_processes, "ensembling", quiet=quiet)
    for name in ("plans.json", "dataset.json"):
        shutil.copy(model_dirs[0] / name, output_dir / name)


def _predict_command(dataset: str, trainer: str, plans_name: str, configuration: str, folds: Sequence,
                     output: str, plans: dict, save_probabilities: bool, prev_output: str) -> list[str]:
    """``oxunet predict`` line(s); a cascade configuration first predicts its previous stage."""
    fold_str = " ".join(str(f) for f in folds)
    lines = []
    cfg = _configuration(plans, configuration) or {}
    prev = cfg.get("previous_stage")
    if prev:
        lines += _predict_command(dataset, trainer, plans_name, prev, folds, prev_output, plans, False, prev_output + "_PREV")
    cmd = f"oxunet predict -i INPUT_FOLDER -o {output} -d {dataset} -c {configuration} -tr {trainer} -p {plans_name} -f {fold_str}"
    if prev:
        cmd += f" --prev-stage {prev_output}"
    if save_probabilities:
        cmd += " --save-probabilities"
    return lines + [cmd]


def inference_commands(info: dict, num_processes: int) -> list[str]:
    """The commands that reproduce the chosen inference, in order."""
    best = info["best_model_or_ensemble"]
    members = best["selected_model_or_models"]
    ensemble = len(members) > 1
    dataset = str(info["dataset_name_or_id"])
    cmds, outputs = [], []
    for j, m in enumerate(members, 1):
        out = f"OUTPUT_FOLDER_MODEL_{j}" if ensemble else "OUTPUT_FOLDER"
        outputs.append(out)
        plans = json.loads(Path(m["plans_file"]).read_text())
        prev_out = f"OUTPUT_FOLDER_PREV_STAGE_MODEL_{j}" if ensemble else "OUTPUT_FOLDER_PREV_STAGE"
        cmds += _predict_command(dataset, m["trainer"], m["plans_identifier"], m["configuration"], info["folds"], out,
                                 plans, ensemble, prev_out)
    if ensemble:
        cmds.append(f"oxunet ensemble -i {' '.join(outputs)} -o OUTPUT_FOLDER -np {num_processes}")
    cmds.append(f"oxunet postprocess apply -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP --pp-file {best['postprocessing_file']} "
                f"--plans-json {best['some_plans_file']} -np {num_processes}")
    return cmds


def find_best_configuration(
    dataset: str | int,
    configurations: Sequence[str] = DEFAULT_CONFIGURATIONS,
    trainers: Sequence[str] = ("nnUNetTrainer",),
    plans: Sequence[str] = ("nnUNetPlans",),
    folds: Sequence[int | str] = (0, 1, 2, 3, 4),
    allow_ensembling: bool = True,
    num_processes: int = 4,
    overwrite: bool = True,
    paths=None,
    quiet: bool = False,
    min_size_search: bool = True,
) -> dict:
    """nnU-Net's ``find_best_configuration``; writes ``<results>/<dataset>/inference_information.json``
    and ``inference_instructions.txt`` and returns the information dict (with ``commands``)."""
    from ..dataset import dataset_name, resolve_paths
    from ..postprocessing import determine_postprocessing

    paths = paths or resolve_paths()
    name = dataset_name(dataset, paths)
    results = paths.require("results") / name
    gt_dir = None
    if paths.raw is not None and (paths.raw / name / "labelsTr").is_dir():
        gt_dir = paths.raw / name / "labelsTr"
    elif paths.preprocessed is not None and (paths.preprocessed / name / "gt_segmentations").is_dir():
        gt_dir = paths.preprocessed / name / "gt_segmentations"
    if gt_dir is None:
        raise FindBestError(f"{name}: no reference segmentations (raw labelsTr or preprocessed gt_segmentations)")

    models = []
    for t, c, p in itertools.product(trainers, configurations, plans):
        model_dir = results / model_identifier(t, p, c)
        plans_file = paths.preprocessed / name / f"{p}.json" if paths.preprocessed is not None else None
        if plans_file is None or not plans_file.is_file():
            plans_file = model_dir / "plans.json"
        if not plans_file.is_file():
            if not quiet:
                print(f"{model_identifier(t, p, c)}: no plans {p} found; skipped")
            continue
        if _configuration(json.loads(plans_file.read_text()), c) is None:
            if not quiet:
                print(f"Configuration {c} not found in plans {p}; skipped")
            continue
        if not model_dir.is_dir():
            raise FindBestError(f"{model_dir}: trained model folder missing; train {c} (all requested folds, with --npz to ensemble)")
        models.append({"plans": p, "configuration": c, "trainer": t, "dir": model_dir})
    if not models:
        raise FindBestError(f"{name}: none of the requested models exist in {results}")

    fs = folds_string(folds)
    all_results: dict[str, dict] = {}
    for m in models:
        merged = m["dir"] / f"crossval_results_folds_{fs}"
        summary = accumulate_cv_results(m["dir"], merged, folds, gt_dir, num_processes, overwrite, quiet)
        all_results[m["dir"].name] = {"source": merged, "result": summary["foreground_mean"]["Dice"]}
    if allow_ensembling:
        for m1, m2 in itertools.combinations(models, 2):
            ident = f"ensemble___{m1['dir'].name}___{m2['dir'].name}___{fs}"
            out = results / "ensembles" / ident
            try:
                ensemble_crossvalidations([m1["dir"], m2["dir"]], out, folds, num_processes, overwrite, quiet)
            except EnsembleError as e:
                raise FindBestError(f"{ident}: {e}") from None
            ds = json.loads((m1["dir"] / "dataset.json").read_text())
            summary = evaluate_folder_from_dataset_json(gt_dir, out, ds, out / "plans.json", num_processes=num_processes,
                                                        chill=True, quiet=quiet)
            all_results[ident] = {"source": out, "result": summary["foreground_mean"]["Dice"]}

    best_score = max(v["result"] for v in all_results.values())
    best_key = next(k for k, v in all_results.items() if v["result"] == best_score)  # ties: the first (simplest)
    source = all_results[best_key]["source"]
    if not quiet:
        for k, v in all_results.items():
            print(f"{k}: {v['result']}")
        print(f"\n*Best*: {best_key}: {best_score}\n")
    determine_postprocessing(source, gt_dir, source / "plans.json", source / "dataset.json", num_processes,
                             keep_postprocessed_files=True, quiet=quiet, min_size_search=min_size_search)
    post = load_summary(source / "postprocessed" / "summary.json")["foreground_mean"]["Dice"]
    idents = best_key.split("___")[1:-1] if best_key.startswith("ensemble___") else [best_key]
    selected = []
    for ident in idents:
        tr, pl, c = ident.split("__")
        selected.append({"configuration": c, "trainer": tr, "plans_identifier": pl,
                         "plans_file": str(results / ident / "plans.json")})
    info = {
        "format": "oxunet.inference_information",
        "version": 1,
        "folds": list(folds),
        "dataset_name_or_id": str(dataset),
        "considered_models": [{k: m[k] for k in ("plans", "configuration", "trainer")} for m in models],
        "ensembling_allowed": allow_ensembling,
        "all_results": {k: v["result"] for k, v in all_results.items()},
        "best_model_or_ensemble": {
            "identifier": best_key,
            "result_on_crossval_pre_pp": best_score,
            "result_on_crossval_post_pp": post,
            "postprocessing_file": str(source / "postprocessing.json"),
            "some_plans_file": str(source / "plans.json"),
            "selected_model_or_models": selected,
        },
    }
    commands = inference_commands(info, num_processes)
    info["commands"] = commands
    write_json(info, results / "inference_information.json")
    text = ["***Run inference like this:***", ""]
    if len(selected) > 1:
        text.append("An ensemble won. Predict with each member (probabilities are needed), then ensemble:")
    text += commands
    with open(results / ".inference_instructions.tmp", "w") as f:
        f.write("\n".join(text) + "\n")
    os.replace(results / ".inference_instructions.tmp", results / "inference_instructions.txt")
    if not quiet:
        print("\n".join(text))
    return info
