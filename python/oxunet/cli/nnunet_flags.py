"""nnU-Net v2.8.1's command-line verbs and their flags, as data: what the ``oxunet_<verb>`` aliases
must accept. Each flag maps to its arity: 0 (a switch), 1 (one value) or "+" (a space-separated
list). ``tests/test_cli_aliases.py`` checks this table against the installed nnunetv2's argparse
definitions, so a drift shows up as a failing test rather than a user's crash."""

from __future__ import annotations

from typing import NamedTuple


class NnunetVerb(NamedTuple):
    positionals: tuple[str, ...]
    flags: dict[str, int | str]


NNUNET_VERBS: dict[str, NnunetVerb] = {
    "plan_and_preprocess": NnunetVerb((), {
        "-d": "+", "-fpe": 1, "-npfp": 1, "--verify_dataset_integrity": 0, "--no_pp": 0, "--clean": 0, "-pl": 1,
        "-gpu_memory_target": 1, "-preprocessor_name": 1, "-overwrite_target_spacing": "+", "-overwrite_plans_name": 1,
        "-c": "+", "-np": "+", "--verbose": 0, "--no_pbar": 0}),
    "extract_fingerprint": NnunetVerb((), {
        "-d": "+", "-fpe": 1, "-np": 1, "--verify_dataset_integrity": 0, "--clean": 0, "--verbose": 0, "--no_pbar": 0}),
    "plan_experiment": NnunetVerb((), {
        "-d": "+", "-pl": 1, "-gpu_memory_target": 1, "-preprocessor_name": 1, "-overwrite_target_spacing": "+",
        "-overwrite_plans_name": 1}),
    "preprocess": NnunetVerb((), {"-d": "+", "-plans_name": 1, "-c": "+", "-np": "+", "--verbose": 0, "--no_pbar": 0}),
    "train": NnunetVerb(("dataset_name_or_id", "configuration", "fold"), {
        "-tr": 1, "-p": 1, "-pretrained_weights": 1, "-num_gpus": 1, "--npz": 0, "--c": 0, "--val": 0, "--val_best": 0,
        "--disable_checkpointing": 0, "-device": 1}),
    "predict": NnunetVerb((), {
        "-i": 1, "-o": 1, "-d": 1, "-p": 1, "-tr": 1, "-c": 1, "-f": "+", "-step_size": 1, "--disable_tta": 0,
        "--verbose": 0, "--save_probabilities": 0, "--continue_prediction": 0, "-chk": 1, "-npp": 1, "-nps": 1,
        "-prev_stage_predictions": 1, "-num_parts": 1, "-part_id": 1, "-device": 1, "--disable_progress_bar": 0,
        "--not_on_device": 0}),
    "predict_from_modelfolder": NnunetVerb((), {
        "-i": 1, "-o": 1, "-m": 1, "-f": "+", "-step_size": 1, "--disable_tta": 0, "--verbose": 0,
        "--save_probabilities": 0, "--continue_prediction": 0, "--c": 0, "-chk": 1, "-npp": 1, "-nps": 1,
        "-prev_stage_predictions": 1, "-device": 1, "--disable_progress_bar": 0, "--not_on_device": 0}),
    "evaluate_folder": NnunetVerb(("gt_folder", "pred_folder"), {
        "-djfile": 1, "-pfile": 1, "-o": 1, "-np": 1, "--chill": 0}),
    "evaluate_simple": NnunetVerb(("gt_folder", "pred_folder"), {"-l": "+", "-il": 1, "-o": 1, "-np": 1, "--chill": 0}),
    "find_best_configuration": NnunetVerb(("dataset_name_or_id",), {
        "-p": "+", "-c": "+", "-tr": "+", "-np": 1, "-f": "+", "--disable_ensembling": 0, "--no_overwrite": 0}),
    "determine_postprocessing": NnunetVerb((), {
        "-i": 1, "-ref": 1, "-plans_json": 1, "-dataset_json": 1, "-np": 1, "--remove_postprocessed": 0}),
    "apply_postprocessing": NnunetVerb((), {
        "-i": 1, "-o": 1, "-pp_pkl_file": 1, "-np": 1, "-plans_json": 1, "-dataset_json": 1}),
    "ensemble": NnunetVerb((), {"-i": "+", "-o": 1, "-np": 1, "--save_npz": 0}),
    "convert_MSD_dataset": NnunetVerb((), {"-i": 1, "-overwrite_id": 1, "-np": 1}),
    "export_model_to_zip": NnunetVerb((), {
        "-d": 1, "-o": 1, "-c": "+", "-tr": 1, "-p": 1, "-f": "+", "-chk": "+", "--not_strict": 0, "--exp_cv_preds": 0}),
    "install_pretrained_model_from_zip": NnunetVerb(("zip",), {}),
    "move_plans_between_datasets": NnunetVerb((), {"-s": 1, "-t": 1, "-sp": 1, "-tp": 1}),
    "accumulate_crossval_results": NnunetVerb(("dataset_name_or_id",), {"-c": 1, "-o": 1, "-f": "+", "-p": 1, "-tr": 1}),
    "convert_old_nnUNet_dataset": NnunetVerb(("input_folder", "output_dataset_name"), {}),
    "plot_overlay_pngs": NnunetVerb((), {
        "-d": 1, "-o": 1, "-np": 1, "-channel_idx": 1, "--use_raw": 0, "-p": 1, "-c": 1, "-overlay_intensity": 1}),
}
