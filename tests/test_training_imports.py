"""oxunet.training has no import cycles: every module imports alone in a fresh interpreter, the
module-level import graph is acyclic, and the torch-free modules stay torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import oxunet.training

PACKAGE = Path(oxunet.training.__file__).parent
TORCH_FREE = ("config", "variants", "kinds", "schedule", "run_options", "fold", "splits", "logger", "parts")


def _modules() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out.append(".".join(["oxunet.training", *parts]))
    return out


def _module_level_imports(name: str) -> set[str]:
    """oxunet.training modules ``name`` imports at module level (function-local imports are lazy by design)."""
    path = PACKAGE.joinpath(*name.split(".")[2:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found.update(c for c in candidates if c.startswith("oxunet.training") and c in ALL)
    return found - {name}


ALL = set(_modules())


def test_module_level_import_graph_is_acyclic():
    graph = {m: _module_level_imports(m) for m in ALL}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if d.startswith(m + "."):
                continue  # a package importing its own submodule is not a cycle
            assert state.get(d) != 1, f"import cycle: {' -> '.join(stack + [m, d])}"
            if d not in state:
                visit(d, stack + [m])
        state[m] = 2

    for m in sorted(ALL):
        if m not in state:
            visit(m, [])


def _import_alone(module: str) -> tuple[str, int, str, str]:
    r = subprocess.run([sys.executable, "-c", f"import {module}, sys; print('torch' in sys.modules)"],
                       capture_output=True, text=True, timeout=300)
    return module, r.returncode, r.stdout.strip(), r.stderr.strip()


def test_each_module_imports_alone_and_config_is_torch_free():
    from concurrent.futures import ThreadPoolExecutor

    torch_free = {f"oxunet.training.{m}" for m in TORCH_FREE}
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(_import_alone, sorted(ALL)))
    failed = [(m, err.splitlines()[-1] if err else rc) for m, rc, _, err in results if rc]
    assert not failed, failed
    with_torch = sorted(m for m, _, out, _ in results if m in torch_free and out != "False")
    assert not with_torch, f"these modules import torch: {with_torch}"
    assert len(results) >= 30
