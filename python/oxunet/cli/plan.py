"""``oxunet plan``: fingerprint (if missing) + experiment planning, nnU-Net's
``nnUNetv2_plan_experiment`` with its flag spellings accepted."""

from __future__ import annotations

import click

from .common import processes_option, quiet_option, raw_dir_option


def _render(plans: dict, path, console) -> None:
    from rich.table import Table

    from ..planning import resolve_configuration

    first = next(iter(plans["configurations"].values()))
    network = first["architecture"]["network_class_name"].rsplit(".", 1)[-1]
    table = Table(title=f"{plans['dataset_name']}: {plans['plans_name']} ({plans['experiment_planner_used']}, {network})")
    for col in ("config", "patch", "spacing", "batch", "stages", "data"):
        table.add_column(col, overflow="fold")
    for name in plans["configurations"]:
        cfg = resolve_configuration(plans, name, str(path))
        table.add_row(
            name + (f" ← {cfg['previous_stage']}" if "previous_stage" in cfg else ""),
            "×".join(map(str, cfg["patch_size"])),
            "×".join(f"{s:.3g}" for s in cfg["spacing"]),
            str(cfg["batch_size"]),
            str(cfg["architecture"]["arch_kwargs"]["n_stages"]),
            cfg["data_identifier"],
        )
    console.print(table)
    console.print(f"transpose_forward {plans['transpose_forward']}; plans: {path}", soft_wrap=True)


def network_tables(plans: dict, source: str) -> str:
    """One layer table per configuration of ``plans`` (inheritance resolved), for --show-network."""
    from ..networks import format_network_table
    from ..planning import resolve_configuration

    blocks = []
    for name in plans["configurations"]:
        cfg = resolve_configuration(plans, name, source)
        if "architecture" not in cfg:
            blocks.append(f"[{name}] no architecture in the plans")
            continue
        patch = cfg.get("patch_size")
        title = f"[{name}] patch {'x'.join(map(str, patch))}" if patch else f"[{name}]"
        blocks.append(title + "\n" + format_network_table(cfg["architecture"], patch))
    return "\n\n".join(blocks)


def _draw(plans: dict, png: str, source: str) -> None:
    from ..networks.diagram import write_network_png

    try:
        out = write_network_png(plans, png, source=source)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"network diagram: {out}", err=True)


@click.command()
@click.option("-d", "--dataset", "datasets", multiple=True,
              help="Dataset id(s) or folder name(s); nnU-Net's `-d 1 2 3` and `-d 1 -d 2` both work.")
@click.argument("more_datasets", nargs=-1, metavar="")
@click.option("-pl", "--planner", default="default", show_default=True,
              help="default, ResEncM, ResEncL, ResEncXL, ResEnc, or nnU-Net's class names "
                   "(ExperimentPlanner, nnUNetPlannerResEncM/L/XL, ResEncUNetPlanner).")
@click.option("-gpu_memory_target", "--gpu-memory-gb", "gpu_memory_gb", type=click.FloatRange(min=0, min_open=True),
              help="GPU memory to plan for, in GB [preset default: 8; ResEncL 24; ResEncXL 40].")
@click.option("-overwrite_plans_name", "-p", "--plans-name", "plans_name", help="Plans name [preset default, e.g. nnUNetPlans].")
@click.option("-overwrite_target_spacing", "--target-spacing", "target_spacing", nargs=3, type=float,
              help="Fullres target spacing (3 numbers, array axis order) instead of the data-driven one.")
@processes_option
@click.option("--verify/--no-verify", "--verify_dataset_integrity", "verify", default=None,
              help="Verify the raw dataset (every image read in full, NaN/inf, labels, spacing outliers, foreground) "
                   "and refuse it on errors; warnings are printed. Default: whenever the fingerprint is extracted.")
@click.option("--clean", is_flag=True, help="Re-extract the fingerprint even if one exists.")
@raw_dir_option
@click.option("--preprocessed-dir", type=click.Path(file_okay=False),
              help="Preprocessed root [$OXUNET_PREPROCESSED or $nnUNet_preprocessed].")
@click.option("--import-nnunet-plans", "import_file", type=click.Path(dir_okay=False),
              help="Instead of planning: validate this nnU-Net plans file and save it for the dataset.")
@click.option("--show-network", is_flag=True,
              help="Also print each configuration's network, stage by stage (features, kernel, stride, blocks, "
                   "feature-map size for the patch); to stderr when planning.")
@click.option("--png", "png", type=click.Path(dir_okay=False),
              help="With --show-network: also draw the networks (stages, channels, strides, patch, deep-supervision "
                   "heads) to this PNG file.")
@click.option("--plans-json", "plans_json", type=click.Path(exists=True, dir_okay=False),
              help="With --show-network: show the networks of this existing plans file (no -d, no planning), on stdout.")
@quiet_option
def plan(datasets, more_datasets, planner, gpu_memory_gb, plans_name, target_spacing, num_processes, verify, clean,
         raw_dir, preprocessed_dir, import_file, show_network, png, plans_json, quiet) -> None:
    """Plan experiments: target spacing, patch and batch size, network topology per configuration.

    Extracts the fingerprint into <preprocessed>/DatasetXXX_Name/ when it is missing, writes
    <plans_name>.json there (nnU-Net's format) and prints its path; the decisions go to stderr.
    `oxunet plan --show-network --plans-json FILE` only prints the networks of an existing plans file.
    """
    import warnings

    from rich.console import Console

    if png and not show_network:
        raise click.UsageError("--png goes with --show-network")
    if plans_json:
        if not show_network or datasets or more_datasets:
            raise click.UsageError("--plans-json goes with --show-network and without -d")
        from ..networks import ArchitectureError
        from ..planning import PlansError, load_plans

        try:
            plans = load_plans(plans_json)
            click.echo(network_tables(plans, str(plans_json)))
            if png:
                _draw(plans, png, str(plans_json))
        except (PlansError, ArchitectureError) as e:
            raise click.ClickException(str(e)) from None
        return
    if not datasets:
        raise click.UsageError("Missing option '-d' / '--dataset' (or use --show-network --plans-json FILE).")

    from ..dataset import resolve_paths
    from ..planning import import_nnunet_plans, plan_experiment, resolve_planner

    console = Console(stderr=True)
    paths = resolve_paths(raw_dir=raw_dir, preprocessed_dir=preprocessed_dir)
    try:
        preset = resolve_planner(planner)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="-pl/--planner") from None
    targets = list(datasets) + list(more_datasets)
    if import_file and len(targets) != 1:
        raise click.UsageError("--import-nnunet-plans takes exactly one dataset")
    for dataset in targets:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if import_file:
                    plans = import_nnunet_plans(import_file, dataset, paths, plans_name)
                else:
                    plans = plan_experiment(
                        dataset, paths, preset, gpu_memory_gb, plans_name, target_spacing or None,
                        num_processes=num_processes, verify=verify, clean=clean, quiet=quiet,
                    )
        except (LookupError, FileNotFoundError, ValueError, RuntimeError) as e:
            raise click.ClickException(str(e)) from None
        for w in caught:
            console.print(f"[yellow]warning:[/yellow] {w.message}")
        path = paths.require("preprocessed") / plans["dataset_name"] / f"{plans['plans_name']}.json"
        if not quiet:
            _render(plans, path, console)
        if show_network:
            click.echo(network_tables(plans, str(path)), err=True)
            if png:
                _draw(plans, png, str(path))
        click.echo(str(path))
