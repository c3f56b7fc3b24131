"""Kernel benchmark: oxunet's Rust kernels vs their NumPy reference twins vs nnunetv2 (and cc3d / MONAI).

Every (case, implementation) pair runs in two fresh subprocesses that build the case's input: one
times `--repeat` calls (median; normal allocator), the other resets the peak-RSS counter
(/proc/self/clear_refs) and reports the peak resident memory of one call *above what the process
held before it* (input included in the baseline; Rust allocations are seen, unlike with
tracemalloc). The parent prints one table with speed-up ratios of oxunet over the others.

    python benches/kernels.py                  # all cases, full sizes (several minutes on 2 cores)
    python benches/kernels.py --quick          # small sizes, a smoke run
    python benches/kernels.py --only resample  # cases whose name contains 'resample'
    python benches/kernels.py --json out.json  # also write the results as JSON

A peer that is not installed is skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import kernel_cases  # noqa: E402  (the case definitions live next to this script)


# ---------------------------------------------------------------------------------------------
# memory accounting of the current process (Linux)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def run_child(case_name: str, impl: str, repeat: int, quick: bool, mode: str) -> dict:
    """Runs inside a measurement subprocess. ``mode="time"``: median of ``repeat`` calls with the
    normal allocator (as a long-running caller sees it). ``mode="memory"``: one call in a process
    whose malloc returns large buffers to the OS (set by the parent), peak RSS above the baseline."""
    import resource

    case = kernel_cases.get_case(case_name, quick)
    fn = case.impls[impl]()  # imports the implementation lazily, outside the measured region
    inputs = case.make_inputs()
    input_mib = sum(getattr(a, "nbytes", 0) for a in inputs) / 2**20
    if mode == "memory":
        base_kib = _status_kib("VmRSS")
        exact = _reset_peak_rss()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        fn(*inputs)
        peak_kib = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        children_kib = max(0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss - children_before)
        return {"peak_extra_mib": (max(0, peak_kib - base_kib) + children_kib) / 1024, "input_mib": input_mib}
    if impl == "oxunet":
        fn(*inputs)  # warm-up: start the Rust thread pool once (as a long-running caller has it)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*inputs)
        times.append(time.perf_counter() - t0)
        del out
    return {"median_s": statistics.median(times), "times_s": times, "input_mib": input_mib}


# ---------------------------------------------------------------------------------------------
# driver


@dataclass
class Result:
    case: str
    impl: str
    median_s: float | None = None
    peak_extra_mib: float | None = None
    input_mib: float | None = None
    note: str = ""


def _spawn(case_name: str, impl: str, repeat: int, quick: bool, timeout: float, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--child", case_name, impl, "--repeat", str(repeat), "--mode", mode]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ)
    if mode == "memory":
        # A fixed mmap threshold makes glibc hand large buffers straight to/from the OS, so memory
        # freed while building the input is not silently reused and hidden from the peak.
        env.update(MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(last[:120])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(case_name: str, impl: str, repeat: int, quick: bool, timeout: float) -> Result:
    try:
        timing = _spawn(case_name, impl, repeat, quick, timeout, "time")
        memory = _spawn(case_name, impl, repeat, quick, timeout, "memory")
    except subprocess.TimeoutExpired:
        return Result(case_name, impl, note=f"timed out after {timeout:.0f} s")
    except RuntimeError as e:
        return Result(case_name, impl, note=f"failed: {e}")
    return Result(case_name, impl, timing["median_s"], memory["peak_extra_mib"], timing["input_mib"])


def peer_available(impl: str) -> str | None:
    """None when usable, else the reason it is skipped."""
    module = kernel_cases.PEER_MODULES.get(impl)
    if module and importlib.util.find_spec(module) is None:
        return f"{module} not installed (pip install '.[bench]')"
    return None


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small inputs (smoke run)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (median; default 3)")
    ap.add_argument("--only", default="", help="run cases whose name contains this text")
    ap.add_argument("--skip", default="", help="comma-separated implementations to skip (e.g. reference)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per measurement")
    ap.add_argument("--json", type=Path, help="write results as JSON to this file")
    ap.add_argument("--child", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=("time", "memory"), default="time", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(run_child(args.child[0], args.child[1], args.repeat, args.quick, args.mode)))
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False, width=None if sys.stdout.isatty() else 150)
    skip = {s for s in args.skip.split(",") if s}
    import oxunet.kernels as k

    console.print(
        f"oxunet kernel benchmark — {platform.machine()}, {os.cpu_count()} cores, "
        f"{k.get_num_threads()} kernel threads, median of {args.repeat} runs, "
        f"{'quick' if args.quick else 'full'} sizes"
    )
    results: list[Result] = []
    cases = [c for c in kernel_cases.case_names() if args.only in c]
    for name in cases:
        case = kernel_cases.get_case(name, args.quick)
        for impl in case.impls:
            if impl in skip:
                continue
            why = peer_available(impl)
            if why:
                results.append(Result(name, impl, note=f"skipped: {why}"))
                console.print(f"  {name:<34} {impl:<10} skipped: {why}")
                continue
            r = measure(name, impl, args.repeat, args.quick, args.timeout)
            results.append(r)
            console.print(
                f"  {name:<34} {impl:<10} {fmt_time(r.median_s):>10}  "
                f"{'' if r.peak_extra_mib is None else f'{r.peak_extra_mib:8.0f} MiB'} {r.note}"
            )

    table = Table(title="oxunet kernels: median wall time, peak extra RSS, speed-up of oxunet")
    for col in ("case", "impl", "time", "peak extra MiB", "input MiB", "oxunet speed-up", "note"):
        table.add_column(col, justify="right" if col not in ("case", "impl", "note") else "left")
    by_case: dict[str, dict[str, Result]] = {}
    for r in results:
        by_case.setdefault(r.case, {})[r.impl] = r
    for name, impls in by_case.items():
        ours = impls.get("oxunet")
        for impl, r in impls.items():
            ratio = ""
            if ours and ours.median_s and r.median_s and impl != "oxunet":
                ratio = f"{r.median_s / ours.median_s:.1f}x"
            table.add_row(
                name,
                impl,
                fmt_time(r.median_s),
                "-" if r.peak_extra_mib is None else f"{r.peak_extra_mib:.1f}",
                "-" if r.input_mib is None else f"{r.input_mib:.1f}",
                ratio,
                r.note,
            )
        table.add_section()
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
