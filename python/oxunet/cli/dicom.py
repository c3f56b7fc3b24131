"""``oxunet dicom``: DICOM series + DICOM-SEG/RTSTRUCT → nnU-Net raw case, and prediction → DICOM-SEG.

Needs the ``dicom`` extra (pydicom, highdicom), imported only when a subcommand runs.
"""

from __future__ import annotations

import click

from .common import quiet_option


def _run(fn, *args, **kwargs):
    """Call a converter, turning input errors and a missing extra into one clear CLI error."""
    try:
        return fn(*args, **kwargs)
    except ImportError as e:
        raise click.ClickException(str(e)) from None
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None


@click.group(name="dicom")
def dicom_group() -> None:
    """Convert DICOM to nnU-Net's raw layout and predictions back to DICOM-SEG (needs oxunet[dicom])."""


@dicom_group.command(name="to-nifti")
@click.argument("series_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--seg", "segs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="DICOM-SEG file(s); each segment becomes a label (repeatable).")
@click.option("--rtstruct", "rtstructs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="RTSTRUCT file(s); each ROI becomes a label, after the SEG segments (repeatable).")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Raw dataset folder to write imagesTr/ and labelsTr/ into.")
@click.option("--case", required=True, help="Case name (files <case>_0000.nii.gz and <case>.nii.gz).")
@click.option("--overlap", type=click.Choice(["last", "first", "error"]), default="last", show_default=True,
              help="Where structures overlap: the later one wins, the earlier one wins, or refuse.")
@click.option("--dataset-json", is_flag=True,
              help="Create/extend <output>/dataset.json with these labels (checked against earlier cases).")
@click.option("--series-uid", help="SeriesInstanceUID to convert when the folder holds several series.")
@quiet_option
def to_nifti(series_dir, segs, rtstructs, out_dir, case, overlap, dataset_json, series_uid, quiet) -> None:
    """Convert the CT/MR series in SERIES_DIR (and its masks) into one nnU-Net raw case.

    Without --seg/--rtstruct only the image is written, to imagesTs/. Labels are numbered 1..K in
    the order given (SEG segments in file order, then RTSTRUCT ROIs). Overlaps and RTSTRUCT
    contours on slices missing from the series are reported on stderr; the written paths go to stdout.
    """
    from ..dicom import dicom_to_case

    result = _run(dicom_to_case, series_dir, out_dir, case, segs=segs, rtstructs=rtstructs, overlap=overlap,
                  dataset_json=dataset_json, series_uid=series_uid)
    for note in result.warnings:
        click.echo(f"warning: {note}", err=True)
    if not quiet and result.label_names:
        click.echo("labels: " + ", ".join(f"{k}={n}" for k, n in enumerate(result.label_names, start=1)), err=True)
    click.echo(str(result.image))
    if result.label is not None:
        click.echo(str(result.label))
    if result.dataset_json is not None:
        click.echo(str(result.dataset_json))


@dicom_group.command(name="from-prediction")
@click.argument("prediction", type=click.Path(exists=True, dir_okay=False))
@click.argument("series_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False),
              help="DICOM-SEG file to write.")
@click.option("--labels", "labels_json", type=click.Path(exists=True, dir_okay=False),
              help="dataset.json whose 'labels' name the segments (default: 'label N').")
@click.option("--series-uid", help="SeriesInstanceUID to reference when the folder holds several series.")
def from_prediction(prediction, series_dir, out_path, labels_json, series_uid) -> None:
    """Write PREDICTION (a label map on SERIES_DIR's grid) as a BINARY DICOM-SEG referencing the series."""
    from ..dicom import prediction_to_seg

    click.echo(str(_run(prediction_to_seg, prediction, series_dir, out_path, labels_json, series_uid)))
