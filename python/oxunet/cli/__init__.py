"""The ``oxunet`` command line. Kept thin: each subcommand parses options and calls a stage
function. Heavy imports (torch above all) happen inside the commands, so ``--help`` is instant."""

from __future__ import annotations

import click

from .convert import convert_msd_command, convert_old_dataset_command, import_masks_command
from .demo import demo
from .dicom import dicom_group
from .ensemble import ensemble
from .evaluate import evaluate
from .find_best import accumulate_crossval_results, find_best
from .guard import guard_commands
from .postprocess import postprocess
from .fingerprint import fingerprint
from .info import info
from .overlay import overlay, overlay_pngs
from .plan import plan
from .plan_and_preprocess import plan_and_preprocess
from .predict import predict
from .preprocess import preprocess
from .report import report
from .sharing import export_model, install_model, move_plans
from .train import train
from .verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="oxunet", prog_name="oxunet")
def main() -> None:
    """oxunet: nnU-Net v2 semantics, Rust-accelerated.

    Read a dataset in nnU-Net's raw layout, plan, preprocess, train, predict and evaluate.
    """


main.add_command(info)
main.add_command(verify)
main.add_command(plan)
main.add_command(preprocess)
main.add_command(plan_and_preprocess)
main.add_command(train)
main.add_command(predict)
main.add_command(convert_msd_command)
main.add_command(import_masks_command)
main.add_command(demo)
main.add_command(dicom_group)
main.add_command(overlay)
main.add_command(overlay_pngs)
main.add_command(evaluate)
main.add_command(postprocess)
main.add_command(ensemble)
main.add_command(find_best)
main.add_command(accumulate_crossval_results)
main.add_command(convert_old_dataset_command)
main.add_command(fingerprint)
main.add_command(export_model)
main.add_command(install_model)
main.add_command(move_plans)
main.add_command(report)


from .bench import bench  # noqa: E402

main.add_command(bench)


# one error contract for every command (and the nnU-Net aliases, which copy these commands)
guard_commands(main)
