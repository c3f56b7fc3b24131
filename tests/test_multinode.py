"""Multi-node training by rendezvous: two torchrun launchers ("nodes") on 127.0.0.1 with --nnodes 2 and a
c10d rendezvous, gloo on CPU. Both ranks end with identical weights; only rank 0 writes (its node's
results folder has the checkpoint, the other node's stays empty)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_trainer import prepared  # noqa: F401 (module fixture: tiny preprocessed dataset)

HERE = Path(__file__).resolve().parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two launchers, two ranks: ~1 min on 2 cores (.ci/run runs it)
def test_two_nodes_by_c10d_rendezvous(prepared, tmp_path):  # noqa: F811
    port = _port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(HERE.parent / "python"), str(HERE), os.environ.get("PYTHONPATH", "")]))
    procs = []
    for node in ("a", "b"):
        results = tmp_path / f"results_{node}"
        results.mkdir()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "oxunet-test",
               "--max-restarts", "0", str(HERE / "multinode_rank.py"), str(prepared / "pre"), str(results),
               str(tmp_path)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["seed"] == r1["seed"]
    assert all(torch.equal(r0["weights"][k], r1["weights"][k]) for k in r0["weights"])
    written = {Path(r["results"]).name: sorted(p.name for p in Path(r["results"]).rglob("*") if p.is_file())
               for r in (r0, r1)}
    rank0_files = written[Path(r0["results"]).name]
    assert "checkpoint_final.pth" in rank0_files and "training_log.json" in rank0_files
    assert written[Path(r1["results"]).name] == []  # rank 1's node wrote nothing
