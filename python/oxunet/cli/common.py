"""Options shared by several commands, with nnU-Net's spellings as second names."""

from __future__ import annotations

import click

dataset_option = click.option("-d", "--dataset", required=True, help="Dataset id (4) or folder name (Dataset004_Hippocampus).")
raw_dir_option = click.option("--raw-dir", type=click.Path(file_okay=False), help="Raw datasets root [$OXUNET_RAW or $nnUNet_raw].")
processes_option = click.option("-np", "--num-processes", default=4, show_default=True, type=click.IntRange(1), help="Worker processes.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="Print only results and errors.")


def expand_multi_values(args: list[str], flags) -> list[str]:
    """nnU-Net's space-separated lists as repeated options: ``-f 0 1 2`` -> ``-f 0 -f 1 -f 2``
    for the options in ``flags`` (a value starting with '-' ends the list)."""
    multi = set(flags)
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
    return out


def multi_value_command(*flags: str) -> type[click.Command]:
    """A click.Command class accepting nnU-Net's space-separated lists (``-d 4 5``, ``-np 8 4 8``)
    for ``flags``, by rewriting them into repeated options before click parses."""

    class MultiValueCommand(click.Command):
        def parse_args(self, ctx, args):
            return super().parse_args(ctx, expand_multi_values(args, flags))

    return MultiValueCommand


def nnunet_renames(mapping: dict[str, str | tuple[str, ...]]):
    """Decorator (above ``@click.command``) telling the ``oxunet_<verb>`` alias which of our options
    an nnU-Net flag means when neither its own spelling nor the kebab-case form finds it:
    ``@nnunet_renames({"-chk": "--checkpoint"})``. Giving the option nnU-Net's spelling as a second
    name is simpler where it reads well; this is for the rest."""

    def attach(cmd: click.Command) -> click.Command:
        # click has no slot for it: aliases.py reads it back with getattr
        cmd.nnunet_renames = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in mapping.items()}  # type: ignore[attr-defined]
        return cmd

    return attach


def warn_ignored(command: str, flags: dict[str, object]) -> None:
    """One warning naming every nnU-Net flag that was given but has no effect here."""
    used = [flag for flag, value in flags.items() if value]
    if used:
        click.echo(f"warning: {command}: ignoring nnU-Net option(s) oxunet does not implement: {', '.join(used)}", err=True)
