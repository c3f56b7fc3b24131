"""Options shared by several commands, with nnU-Net's spellings as second names."""

from __future__ import annotations

import click

dataset_option = click.option("-d", "--dataset", required=True, help="Dataset id (4) or folder name (Dataset004_Hippocampus).")
raw_dir_option = click.option("--raw-dir", type=click.Path(file_okay=False), help="Raw datasets root [$OXUNET_RAW or $nnUNet_raw].")
processes_option = click.option("-np", "--num-processes", default=4, show_default=True, type=click.IntRange(1), help="Worker processes.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="Print only results and errors.")


def multi_value_command(*flags: str) -> type[click.Command]:
    """A click.Command class accepting nnU-Net's space-separated lists (``-d 4 5``, ``-np 8 4 8``)
    for ``flags``, by rewriting them into repeated options before click parses."""
    multi = set(flags)

    class MultiValueCommand(click.Command):
        def parse_args(self, ctx, args):
            out, current = [], None
            for token in args:
                if token in multi:
                    current = token
                    out.append(token)
                elif current is not None and not token.startswith("-"):
                    if out[-1] != current:
                        out.append(current)
                    out.append(token)
                else:
                    current = None
                    out.append(token)
            return super().parse_args(ctx, out)

    return MultiValueCommand
