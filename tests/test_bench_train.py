"""`oxunet bench train` on CPU (small budget): both modes, several worker counts, the result file."""

from __future__ import annotations

import json

from click.testing import CliRunner

from oxunet.cli import main
from test_trainer import prepared  # noqa: F401 (module fixture: tiny preprocessed dataset)


def test_bench_train_cpu(prepared, tmp_path):  # noqa: F811
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(main, ["bench", "train", "-d", "900", "-c", "3d_fullres", "--device", "cpu",
                                  "--epochs", "2", "--iterations", "2", "-np", "0,1", "--batch-size", "2",
                                  "--precision", "fp32", "-o", str(out), "--preprocessed-dir", str(prepared / "pre"),
                                  "--results-dir", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["format"] == "oxunet-benchmark-train" and res["device"] == "cpu" and res["gpu_name"] is None
    assert res["compiled"] is False and res["precision"] == "fp32" and res["augment_on"] == "workers"
    assert res["patch_size"] == [16, 16, 16] and res["batch_size"] == 2 and res["iterations_per_epoch"] == 2
    settings = [run["setting"] for run in res["runs"]]
    assert settings == ["no data loading", "data loading, 0 workers", "data loading, 1 workers"]
    for run in res["runs"]:
        assert len(run["epoch_s"]) == 2 and run["fastest_epoch_s"] == min(run["epoch_s"]) > 0
        assert abs(run["iterations_per_s"] - 2 / run["fastest_epoch_s"]) < 1e-9
    assert "slowdown_vs_no_data_loading" in res["runs"][1] and "slowdown_vs_no_data_loading" not in res["runs"][0]
    # nothing of a real training run is written: no checkpoints, no validation
    assert not list((tmp_path / "res").rglob("checkpoint_*.pth"))


def test_bench_train_default_output_and_modes(prepared, tmp_path):  # noqa: F811
    r = CliRunner().invoke(main, ["bench", "train", "-d", "900", "--device", "cpu", "--epochs", "1", "--iterations",
                                  "1", "--no-data-loading", "--precision", "fp32", "--quiet",
                                  "--preprocessed-dir", str(prepared / "pre"), "--results-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    path = tmp_path / "Dataset900_Tiny" / "nnUNetTrainerBenchmark_5epochs__nnUNetPlans__3d_fullres" / "fold_0" / \
        "benchmark_result.json"
    assert r.output.strip().endswith(str(path))
    assert [run["num_workers"] for run in json.loads(path.read_text())["runs"]] == [None]
    bad = CliRunner().invoke(main, ["bench", "train", "-d", "900", "--device", "cpu", "-np", "two",
                                    "--preprocessed-dir", str(prepared / "pre"), "--results-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "worker counts" in bad.output
