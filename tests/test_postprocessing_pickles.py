"""The restricted unpickler: nnU-Net's property pickles load, anything executable is refused."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from evalpost_helpers import write_seg
from oxunet.io import UnsafePickleError, load_restricted_pickle
from peers import require


def test_nnunet_properties_pickle_loads(tmp_path):
    require("nnunetv2")
    from batchgenerators.utilities.file_and_folder_operations import save_pickle
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    write_seg(tmp_path / "img.nii.gz", np.ones((4, 5, 6), np.uint8))
    _, props = SimpleITKIO().read_images([str(tmp_path / "img.nii.gz")])
    props.update(
        shape_before_cropping=(4, 5, 6),
        bbox_used_for_cropping=[[0, 4], [0, 5], [0, 6]],
        shape_after_cropping_and_before_resampling=(4, 5, 6),
        class_locations={1: np.array([[0, 1, 2, 3]], dtype=np.int64), 2: np.zeros((0, 4), np.int64)},
        scalars=(np.float32(1.5), np.int64(7), np.bool_(True)),
        a_set={1, 2},
    )
    save_pickle(props, str(tmp_path / "case.pkl"))
    loaded = load_restricted_pickle(tmp_path / "case.pkl")
    assert loaded["sitk_stuff"]["spacing"] == props["sitk_stuff"]["spacing"] == (1.5, 1.0, 3.0)
    assert loaded["sitk_stuff"]["direction"] == props["sitk_stuff"]["direction"]
    np.testing.assert_array_equal(loaded["class_locations"][1], props["class_locations"][1])
    assert loaded["class_locations"][2].shape == (0, 4)
    assert loaded["scalars"] == props["scalars"] and type(loaded["scalars"][0]) is np.float32
    assert loaded["a_set"] == {1, 2}


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_is_refused_naming_file_and_global(tmp_path, protocol):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"x": _Evil()}, protocol=protocol))
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*'(posix|os)\.system'"):
        load_restricted_pickle(path)


def test_other_globals_need_an_explicit_stand_in(tmp_path):
    path = tmp_path / "pp.pkl"
    path.write_bytes(pickle.dumps(([np.array], [{"k": 1}])))
    with pytest.raises(UnsafePickleError, match="numpy.array"):
        load_restricted_pickle(path)
    fns, kwargs = load_restricted_pickle(path, {("numpy", "array"): "stand-in"})
    assert fns == ["stand-in"] and kwargs == [{"k": 1}]


def test_truncated_pickle_names_the_file(tmp_path):
    path = tmp_path / "broken.pkl"
    path.write_bytes(pickle.dumps({"a": np.arange(10)})[:20])
    with pytest.raises(pickle.UnpicklingError, match="broken.pkl"):
        load_restricted_pickle(path)
