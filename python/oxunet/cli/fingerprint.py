"""``oxunet fingerprint``: only the dataset fingerprint, as ``nnUNetv2_extract_fingerprint``
(``oxunet plan`` extracts it too when it is missing)."""

from __future__ import annotations

import click

from .common import multi_value_command, quiet_option, raw_dir_option


@click.command(cls=multi_value_command("-d", "--dataset"))
@click.option("-d", "--dataset", "datasets", multiple=True, required=True, help="Dataset id(s) or folder name(s): -d 4 5.")
@click.option("-np", "--num-processes", default=8, show_default=True, type=click.IntRange(1), help="Worker processes.")
@click.option("--verify", "--verify_dataset_integrity", "verify", is_flag=True, help="Verify the raw dataset first; refuse it on errors.")
@click.option("--clean", is_flag=True, help="Re-extract even if a fingerprint exists.")
@raw_dir_option
@click.option("--preprocessed-dir", type=click.Path(file_okay=False), help="Preprocessed root [$OXUNET_PREPROCESSED or $nnUNet_preprocessed].")
@quiet_option
def fingerprint(datasets, num_processes, verify, clean, raw_dir, preprocessed_dir, quiet) -> None:
    """Extract the dataset fingerprint (spacings, shapes after cropping, foreground intensities)
    into <preprocessed>/DatasetXXX_Name/dataset_fingerprint.json and print its path."""
    from ..dataset import dataset_name, resolve_paths
    from ..dataset.verify import DatasetVerificationError, verify_dataset
    from ..planning import extract_fingerprint
    from ..planning.fingerprint import FINGERPRINT_FILE

    paths = resolve_paths(raw_dir=raw_dir, preprocessed_dir=preprocessed_dir)
    for dataset in datasets:
        try:
            name = dataset_name(dataset, paths)
            raw, out = paths.require("raw") / name, paths.require("preprocessed") / name
            if verify:
                report = verify_dataset(raw, num_processes=num_processes)
                if not report.ok:
                    raise DatasetVerificationError(f"{raw}: verification found errors; run `oxunet verify -d {dataset}`")
            extract_fingerprint(raw, out, num_processes=num_processes, overwrite=clean, quiet=quiet)
        except (LookupError, FileNotFoundError, ValueError, DatasetVerificationError) as e:
            raise click.ClickException(str(e)) from None
        click.echo(str(out / FINGERPRINT_FILE))
