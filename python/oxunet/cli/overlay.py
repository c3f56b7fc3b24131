"""``oxunet overlay``: PNG grids of image + label/prediction slices, for QC of results or of a new dataset."""

from __future__ import annotations

import click

from .common import quiet_option


@click.command(name="overlay")
@click.argument("image", required=False, type=click.Path(exists=True, dir_okay=False))
@click.argument("label", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(),
              help="PNG file to write (with --dataset: a folder for <case>.png).")
@click.option("--dataset", "dataset_dir", type=click.Path(exists=True, file_okay=False),
              help="A raw dataset folder: one PNG per training case (image channel 0 + label).")
@click.option("--cases", default=5, show_default=True, type=click.IntRange(1), help="With --dataset: how many cases.")
@click.option("--axis", type=click.Choice(["z", "y", "x"]), default="z", show_default=True,
              help="Array axis to slice along (numpy order: z is the first axis, axial for most CT/MR).")
@click.option("--slices", "n_slices", default=6, show_default=True, type=click.IntRange(1),
              help="How many slices: those with most foreground, else around the middle.")
@click.option("--slice", "slice_index", type=click.IntRange(0), multiple=True,
              help="Exact slice index to show (repeatable); overrides --slices.")
@click.option("--alpha", default=0.4, show_default=True, type=click.FloatRange(0, 1), help="Label opacity.")
@click.option("--window", nargs=2, type=float, default=(0.5, 99.5), show_default=True,
              help="Intensity percentiles mapped to black and white.")
@quiet_option
def overlay(image, label, output, dataset_dir, cases, axis, n_slices, slice_index, alpha, window, quiet) -> None:
    """Write IMAGE (with LABEL overlaid, one colour per label value) as a PNG grid of slices.

    \b
    oxunet overlay case_0000.nii.gz case.nii.gz -o case.png --slices 9
    oxunet overlay --dataset $OXUNET_RAW/Dataset004_Hippocampus -o qc/ --cases 5
    """
    from ..overlay import overlay_dataset, overlay_files

    kwargs = dict(axis=axis, slices=list(slice_index) if slice_index else n_slices, alpha=alpha,
                  percentiles=tuple(window))
    if dataset_dir:
        if image or label:
            raise click.UsageError("give either IMAGE [LABEL] or --dataset, not both")
        try:
            results = overlay_dataset(dataset_dir, output, cases, **kwargs)
        except (ValueError, FileNotFoundError) as e:
            raise click.ClickException(str(e)) from None
        failed = 0
        for case, png, problem in results:
            if problem:
                click.echo(f"{'warning' if png else 'error'}: {case}: {problem}", err=True)
            if png:
                click.echo(str(png))
            else:
                failed += 1
        if failed:
            raise click.ClickException(f"{failed} of {len(results)} case(s) could not be rendered")
        return
    if not image:
        raise click.UsageError("give IMAGE [LABEL] or --dataset DIR")
    try:
        click.echo(str(overlay_files(image, label, output, **kwargs)))
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None


@click.command(name="overlay-pngs")
@click.option("-d", "--dataset", required=True, help="Dataset id or name.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder for <case>.png.")
@click.option("-np", "--num-processes", default=8, show_default=True, type=click.IntRange(1))
@click.option("--channel", "-channel_idx", "channel", default=0, show_default=True, type=click.IntRange(0),
              help="Image channel to show.")
@click.option("--use-raw", "--use_raw", "use_raw", is_flag=True,
              help="The raw images and labels instead of the configuration's preprocessed data.")
@click.option("-p", "--plans", "plans_name", default="nnUNetPlans", show_default=True, help="Plans (preprocessed data).")
@click.option("-c", "--configuration", default="3d_fullres", show_default=True, help="Configuration (preprocessed data).")
@click.option("--alpha", "-overlay_intensity", "alpha", default=0.6, show_default=True, type=click.FloatRange(0, 1),
              help="Label opacity.")
@click.option("--raw-dir", type=click.Path(file_okay=False), help="[$OXUNET_RAW or $nnUNet_raw]")
@click.option("--preprocessed-dir", type=click.Path(file_okay=False), help="[$OXUNET_PREPROCESSED or $nnUNet_preprocessed]")
@quiet_option
def overlay_pngs(dataset, output, num_processes, channel, use_raw, plans_name, configuration, alpha, raw_dir,
                 preprocessed_dir, quiet) -> None:
    """One PNG per training case of a dataset (nnU-Net's nnUNetv2_plot_overlay_pngs): the image with
    its segmentation at the slice holding most of every class, from the preprocessed data of a
    configuration (default, what the network sees) or the raw data (--use-raw)."""
    from ..dataset import DatasetNotFoundError, resolve_paths
    from ..overlay_pngs import overlay_pngs as write_all

    paths = resolve_paths(raw_dir=raw_dir, preprocessed_dir=preprocessed_dir)
    try:
        files = write_all(dataset, output, paths, num_processes=num_processes, channel=channel, use_raw=use_raw,
                          plans_name=plans_name, configuration=configuration, alpha=alpha, quiet=quiet)
    except (DatasetNotFoundError, FileNotFoundError, ValueError, LookupError) as e:
        raise click.ClickException(str(e)) from None
    if not quiet:
        click.echo(f"{len(files)} overlay(s) in {output}", err=True)
