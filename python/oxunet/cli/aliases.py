"""``oxunet_<verb>`` console scripts: each oxunet command again, under nnU-Net's verb name and
accepting every flag nnU-Net's verb has (``oxunet_train 4 3d_fullres 0 -tr ... --npz``).

An alias is a copy of the oxunet command whose options also answer to nnU-Net's spellings. For each
nnU-Net flag (table in :mod:`.nnunet_flags`) the first of these that the command has is used:

1. the flag itself (give your option nnU-Net's spelling as a second name: ``-np/--num-processes``);
2. explicit names from :data:`ALIASES` or from ``@nnunet_renames`` on the command (cli/common.py);
3. ``--step-size`` / ``--step_size`` for ``-step_size`` (the kebab and snake long forms).

A flag none of these finds is still accepted; using it prints one warning naming it. nnU-Net's
space-separated lists (``-f 0 1 2``) work for every ``multiple=True`` option, and nnU-Net's
positional arguments fill options named in :data:`ALIASES` when the command has no arguments.

A command that gets an alias needs no wiring here beyond its row in :data:`ALIASES` and a line in
pyproject.toml's ``[project.scripts]``: ``oxunet_<verb> = "oxunet.cli.aliases:oxunet_<verb>"``.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import click

from .common import expand_multi_values
from .nnunet_flags import NNUNET_VERBS

Names = tuple[str, ...]
HELP_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass(frozen=True)
class Alias:
    """``oxunet_<verb>`` ↔ ``nnUNetv2_<verb>``: which oxunet command runs it and how flags map."""

    verb: str  # nnU-Net's verb without the nnUNetv2_ prefix
    commands: Names  # candidate oxunet command paths ("postprocess apply"); the first that exists is used
    renames: dict[str, Names] = field(default_factory=dict)  # nnU-Net flag -> our option names to try
    positionals: tuple[Names, ...] = ()  # per nnU-Net positional: our option names to try
    quiet_flags: Names = ("--no_pbar", "--disable_progress_bar")  # mean --quiet when the command has one

    @property
    def name(self) -> str:
        return f"oxunet_{self.verb}"


def _a(verb: str, *commands: str, positionals: tuple[Names, ...] = (), renames: dict[str, Names] | None = None) -> Alias:
    return Alias(verb, commands, dict(renames or {}), positionals)


_PREDICT = {
    "-i": ("--input",), "-o": ("--output",), "-d": ("--dataset",), "-chk": ("--checkpoint", "--checkpoint-name"),
    "-npp": ("--num-processes-preprocessing", "--preprocessing-processes"),
    "-nps": ("--num-processes-export", "--num-processes-segmentation-export", "--export-processes"),
    "-prev_stage_predictions": ("--prev-stage-predictions", "--previous-stage"),
    "--disable_tta": ("--no-tta", "--disable-tta"), "--save_probabilities": ("--save-probabilities", "--npz"),
    "--continue_prediction": ("--continue-prediction", "--continue"),
}
_EVAL_POSITIONALS = (("--gt", "--reference", "--gt-folder"), ("--pred", "--predictions", "--pred-folder"))

ALIASES: dict[str, Alias] = {a.name: a for a in (
    _a("plan_and_preprocess", "plan-and-preprocess"),
    _a("extract_fingerprint", "fingerprint"),
    _a("plan_experiment", "plan"),
    _a("preprocess", "preprocess"),
    _a("train", "train", renames={"-pretrained_weights": ("--pretrained",)}),
    _a("predict", "predict", renames=_PREDICT),
    _a("predict_from_modelfolder", "predict", renames={
        **_PREDICT, "-m": ("--model-folder", "--model", "--model-dir"), "--c": ("--continue-prediction", "--continue")}),
    _a("evaluate_folder", "evaluate folder", "evaluate", positionals=_EVAL_POSITIONALS, renames={
        "-djfile": ("--dataset-json",), "-pfile": ("--plans-json", "--plans-file", "--plans"), "-o": ("--output",)}),
    _a("evaluate_simple", "evaluate simple", "evaluate-simple", "evaluate", positionals=_EVAL_POSITIONALS, renames={
        "-l": ("--labels",), "-il": ("--ignore-label",), "-o": ("--output",)}),
    _a("find_best_configuration", "find-best", positionals=(("--dataset", "-d"),), renames={
        "-p": ("--plans", "--plans-name"), "-c": ("--configurations",), "-tr": ("--trainers", "--trainer"),
        "-f": ("--folds", "--fold"), "--disable_ensembling": ("--no-ensembling",)}),
    _a("determine_postprocessing", "postprocess determine", "determine-postprocessing", "postprocess", renames={
        "-i": ("--input", "--predictions"), "-ref": ("--reference", "--gt")}),
    _a("apply_postprocessing", "postprocess apply", "apply-postprocessing", renames={
        "-i": ("--input",), "-o": ("--output",), "-pp_pkl_file": ("--postprocessing", "--pp-file", "--postprocessing-file")}),
    _a("ensemble", "ensemble", renames={"-i": ("--input", "--inputs"), "-o": ("--output",),
                                        "--save_npz": ("--save-probabilities",)}),
    _a("convert_MSD_dataset", "convert-msd"),
    _a("export_model_to_zip", "export-model"),
    _a("install_pretrained_model_from_zip", "install-model"),
    _a("move_plans_between_datasets", "move-plans"),
    _a("plot_overlay_pngs", "overlay-pngs"),
    _a("accumulate_crossval_results", "accumulate-crossval-results"),
    _a("convert_old_nnUNet_dataset", "convert-old-dataset"),
)}


class AliasMissingError(LookupError):
    """The oxunet command an alias runs is not part of this build."""


def resolve_command(alias: Alias) -> tuple[str, click.Command]:
    """(path, command) of the first of ``alias.commands`` this build has."""
    from . import main

    for path in alias.commands:
        cmd: click.Command | None = main
        for part in path.split():
            cmd = cmd.commands.get(part) if isinstance(cmd, click.Group) else None
        if cmd is not None and not isinstance(cmd, click.Group):
            return path, cmd
    raise AliasMissingError(f"{alias.name}: this oxunet has no `oxunet {alias.commands[0]}` command yet")


def _option_names(cmd: click.Command) -> dict[str, click.Option]:
    return {o: p for p in cmd.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}


def _fits(option: click.Option, arity: int | str) -> bool:
    # a switch must land on a flag option and a valued flag on a valued option
    return (arity == 0) == bool(option.is_flag or option.count)


def _candidates(alias: Alias, cmd: click.Command, flag: str) -> Names:
    core = flag.lstrip("-")
    explicit = tuple(getattr(cmd, "nnunet_renames", {}).get(flag, ())) + alias.renames.get(flag, ())
    return (flag, *explicit, "--" + core.replace("_", "-"), "--" + core)


def _ignored_param(flag: str, arity: int | str) -> click.Option:
    name = "nnunet_ignored_" + flag.lstrip("-").replace("-", "_")
    if arity == 0:
        return click.Option([flag, name], is_flag=True, default=False, hidden=True)
    return click.Option([flag, name], multiple=arity == "+", default=None, hidden=True)


if TYPE_CHECKING:  # the mixin only ever sits in front of a click.Command (see build_alias)
    _MixinBase = click.Command
else:
    _MixinBase = object


class _AliasMixin(_MixinBase):
    """Mixed in front of the copied command's own class: rewrites nnU-Net's positional and list
    syntax before click parses, and drops (with a warning) the flags oxunet does not implement."""

    alias_positionals: list[click.Option]
    alias_ignored: dict[str, str]  # param name -> nnU-Net flag

    def parse_args(self, ctx, args):
        args = self._positionals_to_options(list(args))
        multi = [o for p in self.params if isinstance(p, click.Option) and p.multiple and p.nargs == 1 for o in p.opts]
        return super().parse_args(ctx, expand_multi_values(args, multi))

    def _positionals_to_options(self, args: list[str]) -> list[str]:
        if not self.alias_positionals:
            return args
        names = _option_names(self)
        slots, out, i = list(self.alias_positionals), [], 0
        while i < len(args):
            tok = args[i]
            opt = names.get(tok)
            if tok == "--":
                out += args[i:]
                break
            if opt is not None:
                out.append(tok)
                i += 1
                if opt.is_flag or opt.count:
                    continue
                take = opt.nargs
                while i < len(args) and (take > 0 or (opt.multiple and not args[i].startswith("-"))):
                    out.append(args[i])
                    i, take = i + 1, take - 1
                continue
            if not tok.startswith("-") and slots:
                out += [slots.pop(0).opts[0], tok]
            else:
                out.append(tok)
            i += 1
        return out

    def invoke(self, ctx):
        used = []
        for pname, flag in self.alias_ignored.items():
            value = ctx.params.pop(pname, None)
            if value:
                used.append(flag + ("" if value is True else " " + " ".join(map(str, value if isinstance(value, tuple) else [value]))))
        if used:
            click.echo(f"warning: {ctx.info_name}: ignoring nnU-Net option(s) oxunet does not implement: {', '.join(used)}", err=True)
        return super().invoke(ctx)


def build_alias(alias: Alias) -> click.Command:
    """The ``oxunet_<verb>`` command: a copy of the oxunet command with nnU-Net's flag names added."""
    path, target = resolve_command(alias)
    verb = NNUNET_VERBS[alias.verb]
    copied = copy.copy(target)
    copied.__class__ = type(f"Alias{type(target).__name__}", (_AliasMixin, type(target)), {})
    cmd = cast(_AliasMixin, copied)  # its class now has the mixin in front
    cmd.name = alias.name
    cmd.context_settings = {**target.context_settings, **HELP_SETTINGS}
    cmd.params = [copy.copy(p) for p in target.params]
    for p in cmd.params:
        if isinstance(p, click.Option):
            p.opts = list(p.opts)
    names = _option_names(cmd)
    mapped, ignored = [], []
    cmd.alias_ignored = {}
    for flag, arity in verb.flags.items():
        if flag in names and _fits(names[flag], arity):
            continue
        hit = next((names[c] for c in _candidates(alias, cmd, flag) if c in names and _fits(names[c], arity)), None)
        if hit is None and flag in alias.quiet_flags:
            hit = names.get("--quiet")
        if hit is not None:
            hit.opts.append(flag)
            names[flag] = hit
            mapped.append(f"{flag} = {next((o for o in hit.opts if o.startswith('--')), hit.opts[0])}")
        else:
            param = _ignored_param(flag, arity)
            cmd.params.append(param)
            names[flag] = param
            cmd.alias_ignored[param.name] = flag
            ignored.append(flag)
    cmd.alias_positionals = []
    if not any(isinstance(p, click.Argument) for p in cmd.params):
        for slot in alias.positionals:
            hit = next((names[c] for c in slot if c in names), None)
            if hit is not None:
                cmd.alias_positionals.append(hit)
    notes = [f"nnU-Net's nnUNetv2_{alias.verb}, run by `oxunet {path}`."]
    if mapped:
        notes.append("nnU-Net spellings: " + "; ".join(mapped) + ".")
    if ignored:
        notes.append("Accepted but not implemented (a warning names them): " + ", ".join(ignored) + ".")
    cmd.epilog = "  ".join(notes)
    return cmd


def _missing(alias: Alias, error: AliasMissingError) -> click.Command:
    @click.command(alias.name, help=f"Not available: {error}",
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True, **HELP_SETTINGS})
    def stub() -> None:
        raise click.ClickException(str(error))

    return stub


def get_alias(name: str) -> click.Command:
    """The console-script object for ``oxunet_<verb>``; one that exits with a clear error when
    its oxunet command is missing from this build."""
    alias = ALIASES[name]
    try:
        return build_alias(alias)
    except AliasMissingError as e:
        return _missing(alias, e)


def __getattr__(name: str) -> click.Command:
    # console scripts point at oxunet.cli.aliases:oxunet_<verb>; built on first use
    if name in ALIASES:
        return get_alias(name)
    raise AttributeError(name)


if __name__ == "__main__":  # python -m oxunet.cli.aliases oxunet_train ... (tests, no installed scripts)
    if len(sys.argv) < 2 or sys.argv[1] not in ALIASES:
        sys.exit(f"usage: python -m oxunet.cli.aliases ALIAS [ARGS...]; aliases: {', '.join(ALIASES)}")
    get_alias(sys.argv[1])(sys.argv[2:], prog_name=sys.argv[1])
