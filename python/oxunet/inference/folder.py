"""Predicting a folder of raw cases (``nnUNetv2_predict``): checks, overlap of the stages, report.

Preprocessing runs in `num_processes_preprocessing` background threads (our kernels release
the GIL), the networks in the calling thread, export in `num_processes_export` threads; at most
that many + 1 cases wait between stages, which bounds memory. ``0`` for both runs everything in
the calling thread, one case after the other. The default (None) is :func:`default_stage_threads`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..constants import SLIDING_WINDOW_STEP_SIZE
from ..dataset import images_by_case
from ..io.atomic import remove_stale_temporaries
from .model_folder import InferenceError
from .runtime import StageTimes, peak_rss_bytes

__all__ = ["collect_cases", "predict_folder"]

REPORT_FORMAT = "oxunet-prediction-report"



def default_stage_threads(cpus: int | None = None) -> int:
    """Background threads per stage (preprocessing, export) when not given: 2, but 1 on machines
    with 2 cores or fewer, where a second thread only takes cores from the network (measured on
    2 cores, OpenVINO int8, 20 Hippocampus cases: 20.7 s with 2 + 2 threads, 15.7 s with 1 + 1)."""
    cpus = os.cpu_count() if cpus is None else cpus
    return 1 if (cpus or 1) <= 2 else 2

def collect_cases(input_dir: Path, file_ending: str, num_channels: int, channel_names=None) -> dict[str, list[Path]]:
    """``{case: [channel files]}`` of a raw input folder, with one clear error per problem:
    a wrong file ending, a missing or an unexpected channel file."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise InferenceError(f"{input_dir}: input folder not found")
    cases = images_by_case(input_dir, file_ending)
    problems = []
    pattern = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})(?P<ending>\..+)$")
    for entry in sorted(input_dir.iterdir()):
        m = pattern.match(entry.name)
        if entry.is_file() and m and not entry.name.endswith(file_ending) and not entry.name.startswith("."):
            problems.append(f"{entry}: file ending {m['ending']!r}, but the model reads {file_ending!r} files "
                            f"(dataset.json file_ending)")
    if not cases and not problems:
        raise InferenceError(f"{input_dir}: no images named CASE_XXXX{file_ending} (e.g. case_0000{file_ending})")
    names = f" ({', '.join(channel_names)})" if channel_names else ""
    for case, files in cases.items():
        got = {int(f.name[len(case) + 1:len(case) + 5]) for f in files}
        for ch in range(num_channels):
            if ch not in got:
                problems.append(f"case {case}: missing channel file {case}_{ch:04d}{file_ending} "
                                f"(the model takes {num_channels} channel(s){names})")
        for ch in sorted(got - set(range(num_channels))):
            problems.append(f"case {case}: unexpected channel file {case}_{ch:04d}{file_ending} "
                            f"(the model takes {num_channels} channel(s){names})")
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise InferenceError(problems[0] + more + ("\n  " + "\n  ".join(problems[1:10]) if len(problems) > 1 else ""))
    return cases


def _finished(predictor, out_stem: Path, save_probabilities: bool) -> bool:
    seg = predictor.output_path(out_stem)
    if not seg.is_file():
        return False
    return not save_probabilities or out_stem.with_name(out_stem.name + ".npz").is_file()


def predict_folder(input_dir, output_dir, model_dir, folds=None, *, checkpoint: str = "checkpoint_final.pth",
                   step_size: float = SLIDING_WINDOW_STEP_SIZE, tta="all", save_probabilities: bool = False, device="auto",
                   precision: str = "auto", prev_stage_dir=None, part_id: int = 0, num_parts: int = 1,
                   overwrite: bool = True, num_processes_preprocessing: int | None = None,
                   num_processes_export: int | None = None,
                   quiet: bool = False, probabilities_dtype="float32", predictor=None, save_uncertainty: bool = False,
                   output_formats=("nifti",), **predictor_kwargs) -> dict:
    """Predicts every case of `input_dir` (nnU-Net's raw layout) into `output_dir`.

    One segmentation per case, ``{case}{file_ending}`` with the input's geometry, written
    atomically; ``overwrite=False`` is nnU-Net's ``--continue_prediction`` (finished outputs are
    skipped). `part_id`/`num_parts` predict ``cases[part_id::num_parts]``. Also written:
    ``dataset.json``, ``plans.json``, ``predict_from_raw_data_args.json`` (as nnU-Net) and
    ``prediction_report.json`` (per-case seconds per stage and peak memory). Returns the report.
    `probabilities_dtype`: 'float32' (nnU-Net's) or 'float16' for the ``.npz`` files.
    `save_uncertainty`: ``{case}_entropy`` / ``{case}_disagreement`` maps beside each segmentation
    and per-case summaries under ``uncertainty`` in the report (:mod:`.uncertainty`).
    `input_dir` may also be a folder of DICOM series (one case per series, :mod:`.dicom_input`);
    `output_formats` then may add 'dicom-seg' and/or 'rtstruct' (``{case}_seg.dcm``,
    ``{case}_rtstruct.dcm``) to the segmentation in the model's file format ('nifti').
    `predictor` reuses an existing :class:`~oxunet.inference.Predictor` (then `model_dir` may be None).
    """
    from .predictor import Predictor

    t_start = time.perf_counter()
    if num_processes_preprocessing is None:
        num_processes_preprocessing = default_stage_threads()
    if num_processes_export is None:
        num_processes_export = default_stage_threads()
    args = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in dict(
        input_dir=input_dir, output_dir=output_dir, model_dir=model_dir, folds=folds, checkpoint=checkpoint,
        step_size=step_size, tta=tta, save_probabilities=save_probabilities, device=str(device), precision=precision,
        prev_stage_dir=prev_stage_dir, part_id=part_id, num_parts=num_parts, overwrite=overwrite,
        num_processes_preprocessing=num_processes_preprocessing, num_processes_export=num_processes_export,
        probabilities_dtype=str(probabilities_dtype), save_uncertainty=save_uncertainty,
        output_formats=list(output_formats)).items()}
    import numpy as np

    if np.dtype(probabilities_dtype) not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise InferenceError(f"probabilities_dtype must be float32 or float16, got {probabilities_dtype!r}")
    probabilities_dtype = np.dtype(probabilities_dtype).type
    if not 0 <= part_id < num_parts:
        raise InferenceError(f"part_id must be in [0, num_parts), got {part_id} of {num_parts}")
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if output_dir.resolve() == input_dir.resolve():
        raise InferenceError(f"{output_dir}: the output folder must differ from the input folder")
    if predictor is None:
        predictor = Predictor.from_model_folder(model_dir, folds, checkpoint=checkpoint, device=device,
                                                precision=precision, step_size=step_size, tta=tta, quiet=quiet,
                                                **predictor_kwargs)
    ds = predictor.dataset
    from .dicom_input import DICOM_FORMATS, find_dicom_series, is_dicom_folder, stage_dicom_input

    bad = [f for f in output_formats if f not in ("nifti", *DICOM_FORMATS)]
    if bad:
        raise InferenceError(f"output formats must be among nifti, {', '.join(DICOM_FORMATS)}; got {bad}")
    dicom_out = [f for f in output_formats if f in DICOM_FORMATS]
    series, staging = {}, None
    if is_dicom_folder(input_dir):
        import tempfile

        staging = Path(tempfile.mkdtemp(prefix="oxunet-dicom-in-"))
        try:
            series = stage_dicom_input(find_dicom_series(input_dir), staging, ds.file_ending, ds.num_channels)
        except BaseException:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            raise
        input_dir = staging
    elif dicom_out:
        raise InferenceError(f"{input_dir}: --output-format {' '.join(dicom_out)} needs DICOM series as input")
    try:
        report = _predict_cases(predictor, input_dir, output_dir, args, prev_stage_dir, part_id, num_parts, overwrite,
                                num_processes_preprocessing, num_processes_export, quiet, save_probabilities,
                                probabilities_dtype, save_uncertainty, t_start)
        for entry in report["cases"]:
            if series:
                entry["dicom"] = _wrap(entry["case"], write_dicom_outputs, entry["case"],
                                       predictor.output_path(output_dir / entry["case"]), series[entry["case"]],
                                       output_dir, dicom_out, predictor.dataset_json)
    finally:
        if staging is not None:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    _write_json(output_dir / "prediction_report.json", report)
    return report


def write_dicom_outputs(case, seg_file, series, output_dir, formats, dataset_json) -> dict:
    from .dicom_input import write_dicom_outputs as write

    out = write(case, seg_file, series, output_dir, formats, dataset_json) if formats else {"files": []}
    out.setdefault("series_instance_uid", series[1].series_instance_uid)
    return out


def _predict_cases(predictor, input_dir, output_dir, args, prev_stage_dir, part_id, num_parts, overwrite,
                   num_processes_preprocessing, num_processes_export, quiet, save_probabilities, probabilities_dtype,
                   save_uncertainty, t_start) -> dict:
    ds = predictor.dataset
    cases = collect_cases(input_dir, ds.file_ending, ds.num_channels, list(ds.channel_names.values()))
    if predictor.previous_stage:
        if prev_stage_dir is None:
            raise InferenceError(f"configuration {predictor.configuration} is a cascade stage: pass the folder with the "
                                 f"predictions of {predictor.previous_stage} (--prev-stage)")
        missing = [c for c in cases if not (Path(prev_stage_dir) / f"{c}{ds.file_ending}").is_file()]
        if missing:
            raise InferenceError(f"{prev_stage_dir}: no previous-stage segmentation for case(s) {', '.join(missing[:5])}"
                                 f" (expected {missing[0]}{ds.file_ending})")
    names = sorted(cases)[part_id::num_parts]
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output_dir)  # half-written outputs of a killed run
    _write_json(output_dir / "dataset.json", predictor.dataset_json)
    _write_json(output_dir / "plans.json", predictor.plans)
    _write_json(output_dir / "predict_from_raw_data_args.json", args)

    skipped = [c for c in names if not overwrite and _finished(predictor, output_dir / c, save_probabilities)]
    todo = [c for c in names if c not in skipped]
    if not quiet:
        print(f"{len(names)} case(s) in part {part_id}/{num_parts}; {len(skipped)} already done, {len(todo)} to predict")

    def prepare(case: str):
        times = StageTimes()
        with times.stage("preprocessing"):
            prev = Path(prev_stage_dir) / f"{case}{ds.file_ending}" if predictor.previous_stage else None
            data, props = predictor.preprocess([str(f) for f in cases[case]], None, prev, case=case)
        return data, props, times

    def export(case: str, staged, props, times):
        res = predictor.finish(staged, props, output_dir / case, save_probabilities, save_probabilities,
                               probabilities_dtype, times=times)
        return res

    reports: list[dict] = []
    pre_pool = ThreadPoolExecutor(num_processes_preprocessing) if num_processes_preprocessing > 0 else None
    exp_pool = ThreadPoolExecutor(num_processes_export) if num_processes_export > 0 else None
    pending_pre: deque[tuple[str, Future]] = deque()
    pending_exp: deque[tuple[str, Future, float]] = deque()
    it = iter(todo)

    def refill():
        while pre_pool is not None and len(pending_pre) < num_processes_preprocessing + 1:
            case = next(it, None)
            if case is None:
                return
            pending_pre.append((case, pre_pool.submit(prepare, case)))

    def collect(block: bool):
        while pending_exp and (block or pending_exp[0][1].done() or len(pending_exp) > num_processes_export + 1):
            case, fut, t0 = pending_exp.popleft()
            res = _result(case, fut)
            res.times["total"] = time.perf_counter() - t0
            reports.append({"case": case, **res.report()})
            if not quiet:
                print(f"{case}: done in {res.times['total']:.2f} s")

    try:
        refill()
        for case in todo:
            t0 = time.perf_counter()
            if pre_pool is not None:
                got_case, fut = pending_pre.popleft()
                data, props, times = _result(got_case, fut)
                refill()
            else:
                data, props, times = _wrap(case, prepare, case)
            predictor._reset_peaks()  # peak GPU memory / RSS per case
            staged = _wrap(case, predictor.run_network, data, props, save_probabilities, probabilities_dtype, times=times,
                           uncertainty=save_uncertainty,
                           spill_dir=predictor._spill_dir(output_dir / case, save_probabilities))
            del data
            if exp_pool is not None:
                pending_exp.append((case, exp_pool.submit(export, case, staged, props, times), t0))
                collect(block=False)
            else:
                res = _wrap(case, export, case, staged, props, times)
                res.times["total"] = time.perf_counter() - t0
                reports.append({"case": case, **res.report()})
                if not quiet:
                    print(f"{case}: done in {res.times['total']:.2f} s")
        collect(block=True)
    finally:
        for pool in (pre_pool, exp_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    report = {"format": REPORT_FORMAT, "version": 1, "args": args, "model": {
        "configuration": predictor.configuration, "trainer": predictor.trainer_name, "folds": predictor.folds,
        "device": str(predictor.device), "precision": predictor.precision, "backend": getattr(predictor, "backend", "torch"),
        "mirror_axes": list(predictor.mirror_axes)},
        "cases": reports, "skipped": skipped, "seconds": round(time.perf_counter() - t_start, 3),
        "peak_rss_bytes": peak_rss_bytes()}
    return report


def _wrap(case: str, fn, *args, **kwargs) -> Any:
    try:
        return fn(*args, **kwargs)
    except InferenceError:
        raise
    except Exception as e:  # one clear line naming the case, the original chained
        raise InferenceError(f"case {case}: {type(e).__name__}: {e}") from e


def _result(case: str, fut: Future) -> Any:
    return _wrap(case, fut.result)


def _write_json(path: Path, obj) -> None:
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=str))
