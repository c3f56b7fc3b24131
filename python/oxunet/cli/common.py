"""Options shared by several commands, with nnU-Net's spellings as second names."""

from __future__ import annotations

import click

dataset_option = click.option("-d", "--dataset", required=True, help="Dataset id (4) or folder name (Dataset004_Hippocampus).")
raw_dir_option = click.option("--raw-dir", type=click.Path(file_okay=False), help="Raw datasets root [$OXUNET_RAW or $nnUNet_raw].")
processes_option = click.option("-np", "--num-processes", default=4, show_default=True, type=click.IntRange(1), help="Worker processes.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="Print only results and errors.")
