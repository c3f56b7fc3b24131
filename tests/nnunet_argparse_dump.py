"""Dumps the argparse flags of every installed ``nnUNetv2_*`` console script as JSON (run as a
script: ``python nnunet_argparse_dump.py OUT.json [VERB ...]``, verbs without the nnUNetv2_ prefix). Each entry point is called with
``ArgumentParser.parse_args`` patched to stop right after the parser is built, so nothing runs."""

import argparse
import importlib.metadata as md
import json
import sys


class _Built(Exception):
    pass


def _capture(store):
    def parse(self, args=None, namespace=None):
        store["parser"] = self
        raise _Built

    return parse


def _sample(action):
    default = action.default
    if isinstance(default, (list, tuple)) and default:
        return [str(v) for v in default]
    if default is not None and not isinstance(default, bool):
        return [str(default)]
    kind = getattr(action.type, "__name__", None)
    return ["1"] if kind == "int" else ["0.5"] if kind == "float" else ["x"]


def dump(only=()) -> dict:
    store: dict = {}
    argparse.ArgumentParser.parse_args = _capture(store)
    argparse.ArgumentParser.parse_known_args = _capture(store)
    verbs = {}
    for ep in md.distribution("nnunetv2").entry_points:
        if ep.group != "console_scripts" or (only and ep.name[len("nnUNetv2_"):] not in only):
            continue
        store.clear()
        try:
            ep.load()()
        except _Built:
            pass
        parser = store.get("parser")
        if parser is None:
            continue
        entries = []
        for a in parser._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            arity = 0 if a.nargs == 0 else "+" if a.nargs in ("+", "*") else 1
            entries.append({"flags": list(a.option_strings), "dest": a.dest, "arity": arity,
                            "required": bool(a.required), "sample": _sample(a)})
        verbs[ep.name[len("nnUNetv2_"):]] = entries
    return verbs


if __name__ == "__main__":
    data = dump(set(sys.argv[2:]))
    with open(sys.argv[1], "w") as f:
        json.dump(data, f, indent=1)
