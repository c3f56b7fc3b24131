"""nnU-Net's ``determine_postprocessing`` and ``apply_postprocessing_to_folder``."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..evaluation import evaluate_folders, labels_from_dataset_json, load_summary, write_json
from ..evaluation.folder import DEFAULT_PROCESSES, list_files
from ..io import ImageIO, io_class_by_name, select_image_io
from .steps import PostprocessingError, apply_steps, load_postprocessing, postprocessing_document


def _load_json_arg(value, folder: str, name: str) -> dict:
    if isinstance(value, dict):
        return value
    path = Path(value) if value is not None else Path(folder) / name
    if not path.is_file():
        raise PostprocessingError(
            f"{path}: {name} not found (pass it explicitly; prediction folders written by predict/ensemble contain one)"
        )
    return json.loads(path.read_text())


def reader_for(plans: dict, dataset_json: dict, example: str | None = None) -> ImageIO:
    """The image reader/writer named by the plans (nnU-Net's ``image_reader_writer_class``)."""
    cls = io_class_by_name(plans.get("image_reader_writer", "")) if plans else None
    if cls is not None:
        return cls()
    return select_image_io(dataset_json["file_ending"], example, dataset_json.get("overwrite_image_reader_writer"))


def _foreground_labels(dataset_json: dict) -> list[int]:
    """nnU-Net's ``label_manager.foreground_labels``: every label value but 0 and the ignore label."""
    values: set[int] = set()
    for name, v in dataset_json["labels"].items():
        if name != "ignore":
            values.update(int(x) for x in (v if isinstance(v, (list, tuple)) else [v]))
    return sorted(values - {0})


def load_postprocess_save(input_file: str, output_file: str, reader: ImageIO, steps: Sequence[dict]) -> None:
    seg, props = reader.read_seg(input_file)
    reader.write_seg(apply_steps(seg[0], steps), output_file, props)


def _run_on_folder(input_dir: str, output_dir: str, names: list[str], reader: ImageIO, steps, num_processes, quiet):
    from .._workers import map_cases

    os.makedirs(output_dir, exist_ok=True)
    jobs = [(os.path.join(input_dir, n), os.path.join(output_dir, n), reader, steps) for n in names]
    map_cases(load_postprocess_save, jobs, num_processes, "postprocessing", quiet=quiet)


def apply_postprocessing_to_folder(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    pp_json_or_pkl: str | os.PathLike | list[dict] | tuple[dict, ...],
    plans: str | os.PathLike | dict | None = None,
    dataset_json: str | os.PathLike | dict | None = None,
    num_processes: int = DEFAULT_PROCESSES,
    quiet: bool = False,
) -> list[str]:
    """Applies the steps (our JSON, nnU-Net's pkl/json, or a list of steps) to every
    segmentation of ``input_dir``, writing to ``output_dir`` (never the input folder).
    plans/dataset.json default to the ones inside ``input_dir``. Returns the file names."""
    input_dir, output_dir = str(input_dir), str(output_dir)
    if os.path.abspath(input_dir) == os.path.abspath(output_dir):
        raise PostprocessingError(f"{output_dir}: the output folder must differ from the input folder")
    steps = list(pp_json_or_pkl) if isinstance(pp_json_or_pkl, (list, tuple)) else load_postprocessing(pp_json_or_pkl)
    plans_d = _load_json_arg(plans, input_dir, "plans.json")
    ds = _load_json_arg(dataset_json, input_dir, "dataset.json")
    names = list_files(input_dir, ds["file_ending"])
    if not names:
        raise PostprocessingError(f"{input_dir}: no segmentations ending with {ds['file_ending']}")
    reader = reader_for(plans_d, ds, os.path.join(input_dir, names[0]))
    _run_on_folder(input_dir, output_dir, names, reader, steps, num_processes, quiet)
    return names


def _evaluate(ref_dir, pred_dir, labels, ignore, ending, reader, num_processes, quiet) -> dict:
    return evaluate_folders(ref_dir, pred_dir, labels, ignore_label=ignore, file_ending=ending, image_reader=reader,
                            output_file=os.path.join(pred_dir, "summary.json"), num_processes=num_processes,
                            chill=True, quiet=quiet)


def determine_postprocessing(
    folder_predictions: str | os.PathLike,
    folder_ref: str | os.PathLike,
    plans: str | os.PathLike | dict | None = None,
    dataset_json: str | os.PathLike | dict | None = None,
    num_processes: int = DEFAULT_PROCESSES,
    keep_postprocessed_files: bool = True,
    quiet: bool = False,
    min_size_search: bool = True,
) -> dict:
    """nnU-Net's rules on cross-validation predictions:

    1. keep the largest component of all foreground labels: accepted iff the foreground mean
       Dice strictly improves and no class's mean Dice decreases;
    2. with more than one label/region, per label/region in dataset.json order, on top of the
       accepted result: keep its largest component; accepted iff that class's mean Dice strictly
       improves.
    3. (oxunet, ``min_size_search``) per label/region, on top of the accepted result: components
       smaller than a searched ``min_size`` become a searched ``replace_with`` (0 or another
       label, as BraTS' small enhancing tumour → necrosis); the best candidate by foreground mean
       Dice (:mod:`.min_size`) is accepted iff, evaluated for real, the foreground mean Dice
       strictly improves and the class's own mean Dice does not decrease.

    Writes ``postprocessing.json`` (steps, decisions with Dice before/after, and nnU-Net's
    fields) into ``folder_predictions`` and the postprocessed files + summary.json into
    ``folder_predictions/postprocessed``. Returns the document.
    """
    pred_dir, ref_dir = str(folder_predictions), str(folder_ref)
    plans_d = _load_json_arg(plans, pred_dir, "plans.json")
    ds = _load_json_arg(dataset_json, pred_dir, "dataset.json")
    labels, ignore, ending, _ = labels_from_dataset_json(ds)
    foreground_labels = _foreground_labels(ds)
    names = list_files(pred_dir, ending)
    if not names:
        raise PostprocessingError(f"{pred_dir}: no predictions ending with {ending}")
    missing = set(list_files(ref_dir, ending)) - set(names)
    if missing and not quiet:
        print(f"WARNING: {len(missing)} reference case(s) have no prediction in {pred_dir}; "
              "postprocessing should be determined on the entire dataset")
    reader = reader_for(plans_d, ds, os.path.join(pred_dir, names[0]))
    output_folder = os.path.join(pred_dir, "postprocessed")
    temp = os.path.join(output_folder, "temp")

    summary_file = os.path.join(pred_dir, "summary.json")
    if os.path.isfile(summary_file):
        baseline = load_summary(summary_file)
    else:
        baseline = _evaluate(ref_dir, pred_dir, labels, ignore, ending, reader, num_processes, quiet)
    input_summary = baseline

    steps: list[dict] = []
    decisions: list[dict] = []
    here = os.path.join(temp, "keep_largest_fg")
    step = {"op": "keep_largest_component", "labels_or_regions": foreground_labels}
    _run_on_folder(pred_dir, here, names, reader, [step], num_processes, quiet)
    pp = _evaluate(ref_dir, here, labels, ignore, ending, reader, num_processes, quiet)
    accept = pp["foreground_mean"]["Dice"] > baseline["foreground_mean"]["Dice"]
    if accept:
        accept = not any(pp["mean"][k]["Dice"] < baseline["mean"][k]["Dice"] for k in pp["mean"])
    decisions.append({"step": step, "criterion": "foreground_mean Dice improves and no class gets worse",
                      "Dice_before": baseline["foreground_mean"]["Dice"], "Dice_after": pp["foreground_mean"]["Dice"],
                      "accepted": accept})
    if accept:
        steps.append(step)
        source, current = here, pp
    else:
        source, current = pred_dir, baseline

    if len(labels) > 1:
        best = os.path.join(temp, "keep_largest_perClassOrRegion_currentBest")
        for lor in labels:
            key = str(lor)
            here = os.path.join(temp, "keep_largest_perClassOrRegion")
            step = {"op": "keep_largest_component", "labels_or_regions": lor}
            _run_on_folder(source, here, names, reader, [step], num_processes, quiet)
            pp = _evaluate(ref_dir, here, labels, ignore, ending, reader, num_processes, quiet)
            accept = pp["mean"][key]["Dice"] > current["mean"][key]["Dice"]
            decisions.append({"step": step, "criterion": f"mean Dice of {key} improves",
                              "Dice_before": current["mean"][key]["Dice"], "Dice_after": pp["mean"][key]["Dice"],
                              "accepted": accept})
            if accept:
                if os.path.isdir(best):
                    shutil.rmtree(best)
                shutil.move(here, best)
                source, current = best, pp
                steps.append(step)
    if min_size_search:
        source, current = _search_min_sizes(source, ref_dir, names, labels, ds, ignore, ending, reader, current,
                                            steps, decisions, temp, num_processes, quiet)
    for name in os.listdir(source):
        if os.path.isfile(os.path.join(source, name)):
            shutil.copy(os.path.join(source, name), os.path.join(output_folder, name))
    final = load_summary(os.path.join(output_folder, "summary.json"))
    doc = postprocessing_document(
        steps,
        decisions=[{**d, "step": postprocessing_document([d["step"]])["steps"][0]} for d in decisions],
        input_folder={k: input_summary[k] for k in ("foreground_mean", "mean")},
        postprocessed={k: final[k] for k in ("foreground_mean", "mean")},
    )
    write_json(doc, os.path.join(pred_dir, "postprocessing.json"))
    shutil.rmtree(temp)
    if not keep_postprocessed_files:
        shutil.rmtree(output_folder)
    if not quiet:
        for d in decisions:
            verdict = "accepted" if d["accepted"] else "rejected"
            rule = f" min_size {d['step']['min_size']} -> {d['step']['replace_with']}" if "min_size" in d["step"] else ""
            print(f"{d['step']['op']} {d['step']['labels_or_regions']}{rule}: Dice {d['Dice_before']:.5f} -> "
                  f"{d['Dice_after']:.5f} ({verdict})")
    return doc


def _search_min_sizes(source, ref_dir, names, labels, ds, ignore, ending, reader, current, steps, decisions, temp,
                      num_processes, quiet):
    """Rule 3 of :func:`determine_postprocessing`, per label/region in order; returns (source, summary)."""
    from .min_size import collect_counts, search_min_size

    values = sorted({v for name, v in ds["labels"].items() if name != "ignore" and not isinstance(v, (list, tuple))}
                    | {int(x) for name, v in ds["labels"].items() if isinstance(v, (list, tuple)) for x in v})
    n_values = max(values + ([ignore] if ignore is not None else [])) + 1
    best = os.path.join(temp, "min_size_currentBest")
    for lor in labels:
        key = str(lor)
        target_values = set(lor) if isinstance(lor, tuple) else {lor}
        replace = [0] + [v for v in values if v != 0 and v not in target_values]
        counts = collect_counts(source, ref_dir, names, reader, [lor], n_values, ignore, num_processes, True)
        choice = search_min_size(counts, [lor], labels, 0, replace)
        if choice is None:
            continue
        step = {"op": "remove_small_components", "labels_or_regions": lor, "min_size": choice.min_size,
                "replace_with": choice.replace_with}
        here = os.path.join(temp, "min_size")
        _run_on_folder(source, here, names, reader, [step], num_processes, quiet)
        pp = _evaluate(ref_dir, here, labels, ignore, ending, reader, num_processes, quiet)
        accept = (pp["foreground_mean"]["Dice"] > current["foreground_mean"]["Dice"]
                  and not pp["mean"][key]["Dice"] < current["mean"][key]["Dice"])
        decisions.append({"step": step, "criterion": f"foreground_mean Dice improves and {key} does not get worse "
                                                     "(min_size and replace_with searched)",
                          "Dice_before": current["foreground_mean"]["Dice"], "Dice_after": pp["foreground_mean"]["Dice"],
                          "accepted": accept})
        if accept:
            if os.path.isdir(best):
                shutil.rmtree(best)
            shutil.move(here, best)
            source, current = best, pp
            steps.append(step)
        else:
            shutil.rmtree(here)
    return source, current
