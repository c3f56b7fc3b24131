"""Ensembling probability folders: parity with nnunetv2's ensemble_folders, pkl/json properties, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from evalpost_helpers import PLANS, dataset_json
from oxunet.ensembling import EnsembleError, ensemble_folders
from peers import nnunet_fork_pools, require

SHAPE = (6, 9, 11)


def _props(tmp_path):
    """Properties as nnU-Net's reader returns them (tuples in sitk_stuff), for a non-trivial geometry."""
    require("nnunetv2")
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    img = sitk.GetImageFromArray(np.zeros(SHAPE, np.uint8))
    img.SetSpacing((0.8, 1.1, 3.0))
    img.SetOrigin((10.0, -4.0, 2.5))
    img.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    sitk.WriteImage(img, str(tmp_path / "geom.nii.gz"))
    _, props = SimpleITKIO().read_images([str(tmp_path / "geom.nii.gz")])
    return props


def _folders(tmp_path, n_folders=2, cases=("a", "b", "c"), channels=3, regions=False):
    from batchgenerators.utilities.file_and_folder_operations import save_pickle

    props = _props(tmp_path)
    rng = np.random.default_rng(0)
    dirs = []
    labels = {"background": 0, "x": [1, 2], "y": 2} if regions else {"background": 0, "x": 1, "y": 2}
    extra = {"regions_class_order": [1, 2]} if regions else {}
    for k in range(n_folders):
        d = tmp_path / f"in{k}"
        d.mkdir()
        for c in cases:
            p = rng.random((channels, *SHAPE)).astype(np.float32)
            if not regions:
                p /= p.sum(0, keepdims=True)
            np.savez_compressed(d / f"{c}.npz", probabilities=p.astype(np.float16 if k == 1 else np.float32))
            save_pickle(props, str(d / f"{c}.pkl"))
        dataset_json(d / "dataset.json", labels, **extra)
        (d / "plans.json").write_text(json.dumps(PLANS))
        dirs.append(d)
    return dirs


def _nnunet_ensemble(dirs, out):
    import nnunetv2.ensembling.ensemble as ens

    with nnunet_fork_pools(ens):
        ens.ensemble_folders([str(d) for d in dirs], str(out), True, 1)


@pytest.mark.parametrize("regions", [False, True], ids=["labels", "regions"])
def test_matches_nnunetv2_with_pkl_and_json_properties(tmp_path, regions):
    dirs = _folders(tmp_path, regions=regions, channels=2 if regions else 3)
    _nnunet_ensemble(dirs, tmp_path / "theirs")
    ours = ensemble_folders(dirs, tmp_path / "ours", save_probabilities=True, num_processes=1, quiet=True)
    assert ours == ["a", "b", "c"]
    # the same folders with our JSON properties instead of nnU-Net's pickles
    json_dirs = []
    for d in dirs:
        j = tmp_path / f"json_{d.name}"
        shutil.copytree(d, j)
        for pkl in j.glob("*.pkl"):
            from oxunet.io import load_restricted_pickle

            props = load_restricted_pickle(pkl)
            pkl.with_suffix(".json").write_text(json.dumps({"format": "oxunet-properties", "version": 1, **props}))
            pkl.unlink()
        json_dirs.append(j)
    ensemble_folders(json_dirs, tmp_path / "ours_json", num_processes=1, quiet=True)
    for c in ours:
        theirs = sitk.ReadImage(str(tmp_path / "theirs" / f"{c}.nii.gz"))
        for folder in ("ours", "ours_json"):
            mine = sitk.ReadImage(str(tmp_path / folder / f"{c}.nii.gz"))
            np.testing.assert_array_equal(sitk.GetArrayFromImage(mine), sitk.GetArrayFromImage(theirs))
            assert mine.GetSpacing() == theirs.GetSpacing() and mine.GetOrigin() == theirs.GetOrigin()
            assert mine.GetDirection() == theirs.GetDirection()
        np.testing.assert_array_equal(np.load(tmp_path / "ours" / f"{c}.npz")["probabilities"],
                                      np.load(tmp_path / "theirs" / f"{c}.npz")["probabilities"])
        assert json.loads((tmp_path / "ours" / f"{c}.json").read_text())["sitk_stuff"]["origin"] == [10.0, -4.0, 2.5]


def test_missing_case_and_wrong_channels_are_clear_errors(tmp_path):
    dirs = _folders(tmp_path)
    (dirs[1] / "b.npz").unlink()
    with pytest.raises(EnsembleError, match=r"in1: missing 1 probability file.*b\.npz"):
        ensemble_folders(dirs, tmp_path / "out", num_processes=1, quiet=True)
    (dirs[0] / "b.npz").unlink()
    dataset_json(dirs[0] / "dataset.json", {"background": 0, "x": 1})
    with pytest.raises(EnsembleError, match="3 probability channels, dataset.json implies 2"):
        ensemble_folders(dirs, tmp_path / "out", num_processes=1, quiet=True)
    with pytest.raises(EnsembleError, match="must differ"):
        ensemble_folders(dirs, dirs[0], num_processes=1, quiet=True)


def test_cli_ensemble(tmp_path):
    from click.testing import CliRunner

    from oxunet.cli import main

    dirs = _folders(tmp_path, cases=("a",))
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["ensemble", "-i", str(dirs[0]), str(dirs[1]), "-o", str(out), "-np", "1", "--save_npz", "-q"])
    assert r.exit_code == 0, r.output
    avg = (np.load(dirs[0] / "a.npz")["probabilities"].astype(np.float32) + np.load(dirs[1] / "a.npz")["probabilities"]) / 2
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "a.nii.gz")))
    np.testing.assert_array_equal(seg, avg.argmax(0))
    assert (out / "a.npz").is_file() and (out / "dataset.json").is_file()
