"""benches/device/check.sh --dry-run: the GPU check's steps on the CPU at a tiny size, so the script that
runs on a lent GPU machine is known to work before device time is spent on it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_check_dry_run(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path))
    proc = subprocess.run(["bash", str(REPO / "benches" / "device" / "check.sh"), "--dry-run", "--skip",
                           "bench_train_hippocampus"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "device_check.json").read_text())
    assert res["dry_run"] is True and res["format"] == "oxunet-device-check"
    assert [s["name"] for s in res["steps"]] == ["cuda_tests", "bench_train_ct", "predict_ct"]
    assert all(s["rc"] == 0 for s in res["steps"])
    bench = res["bench_train_ct"]
    assert [r["setting"] for r in bench["runs"]] == ["no data loading", "data loading, 0 workers",
                                                     "data loading, 1 workers"]
    assert all(r["fastest_epoch_s"] > 0 for r in bench["runs"])
    runs = res["predict_ct"]["runs"]
    assert runs["device export"]["on_device"] and not runs["rust export"]["on_device"]
    assert runs["rust export"]["agreement_with_device export"] >= 0.999
    assert set(runs["device export"]["seconds"]) >= {"preprocessing", "network", "aggregation", "export", "total"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device_check.json"]  # the device returns 8 files at most
