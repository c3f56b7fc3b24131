"""The preprocessed-case format: round trip, patch reads, completeness and interrupted writes."""

import json
import multiprocessing
import os

import numpy as np
import pytest

from oxunet.preprocessing import storage
from oxunet.preprocessing.storage import StorageError, case_is_complete, list_cases, open_case, read_patch, write_case


def _case(seed=0, shape=(2, 11, 13, 9)):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=shape).astype(np.float32)
    seg = rng.integers(-1, 3, size=(1, *shape[1:])).astype(np.int8)
    locs = {
        1: np.argwhere(seg == 1)[:7],
        2: np.argwhere(seg == 2)[:5],
        (1, 2): np.argwhere(seg > 0)[:4],
        3: np.zeros((0, 4), np.int64),  # an absent class, as nnU-Net's []
    }
    props = {
        "spacing": [1.0, 0.5, 0.5],
        "sitk_stuff": {"spacing": (0.5, 0.5, 1.0), "origin": (0.0, 1.0, 2.0), "direction": tuple(np.eye(3).ravel())},
        "shape_before_cropping": (13, 15, 9),
        "bbox_used_for_cropping": [[1, 12], [0, 13], [np.int64(0), np.int64(9)]],
        "shape_after_cropping_and_before_resampling": (11, 13, 9),
        "class_locations": {"ignored": "here"},
    }
    return data, seg, props, locs


def test_round_trip(tmp_path):
    data, seg, props, locs = _case()
    write_case(tmp_path, "case_1", data, seg, props, locs)
    h = open_case(tmp_path, "case_1")
    assert not h.data.flags.writeable and not h.seg.flags.writeable
    np.testing.assert_array_equal(h.data, data)
    np.testing.assert_array_equal(h.seg, seg)
    assert h.data.dtype == np.float32 and h.seg.dtype == np.int8 and h.shape == data.shape[1:]
    with pytest.raises(ValueError):
        h.data[0, 0, 0, 0] = 1  # read-only
    import mmap

    assert isinstance(memoryview(h.data.base.base).obj, mmap.mmap)  # memory-mapped, not read
    assert h.properties["bbox_used_for_cropping"] == [[1, 12], [0, 13], [0, 9]]
    assert h.properties["sitk_stuff"]["origin"] == [0.0, 1.0, 2.0]
    assert h.properties["shape_before_cropping"] == [13, 15, 9]
    assert "class_locations" not in h.properties  # the coordinates live in the .npy only
    assert list(h.class_locations) == [1, 2, (1, 2), 3]
    for k, v in locs.items():
        assert h.class_locations[k].dtype == np.int32 and h.class_locations[k].shape == (len(v), 3)
        np.testing.assert_array_equal(h.class_locations[k], v[:, 1:])  # without nnU-Net's channel column
    loaded = open_case(tmp_path, "case_1", mmap=False)
    assert loaded.data.flags.writeable  # read into memory
    np.testing.assert_array_equal(loaded.class_locations[(1, 2)], locs[(1, 2)][:, 1:])
    assert list_cases(tmp_path) == ["case_1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "case_1.case.json", "case_1.data.npy", "case_1.locs.npy", "case_1.seg.npy"]


def test_inference_case_without_seg_or_locations(tmp_path):
    data, _, props, _ = _case()
    write_case(tmp_path, "x", data, None, props)
    h = open_case(tmp_path, "x")
    assert h.seg is None and h.class_locations is None
    d, s = read_patch(h, [[0, 4], [0, 4], [0, 4]])
    assert s is None and d.shape == (2, 4, 4, 4)


@pytest.mark.parametrize(
    "box",
    [
        [[2, 7], [3, 10], [1, 8]],  # inside
        [[-3, 5], [8, 20], [-2, 11]],  # overhangs on every side
        [[0, 11], [0, 13], [0, 9]],  # the whole case
        [[5, 6], [-4, 0], [0, 3]],  # fully outside on one axis
    ],
)
def test_read_patch_matches_padded_numpy_slicing(tmp_path, box):
    data, seg, props, locs = _case(1)
    write_case(tmp_path, "c", data, seg, props, locs)
    h = open_case(tmp_path, "c")
    d, s = read_patch(h, box)

    def reference(arr, pad):
        spatial = arr.shape[1:]
        if any(ub <= 0 or lb >= n for (lb, ub), n in zip(box, spatial)):
            pad = 0  # acvl's crop_and_pad_nd: a box entirely outside gives zeros
        before = [max(0, -lb) for lb, _ in box]
        after = [max(0, ub - n) for (_, ub), n in zip(box, spatial)]
        inner = arr[(slice(None), *(slice(max(lb, 0), min(ub, n)) for (lb, ub), n in zip(box, spatial)))]
        if inner.size == 0:
            return np.full((arr.shape[0], *(ub - lb for lb, ub in box)), pad, arr.dtype)
        return np.pad(inner, [(0, 0), *zip(before, after)], constant_values=pad)

    np.testing.assert_array_equal(d, reference(data, 0))
    np.testing.assert_array_equal(s, reference(seg.astype(np.int16), -1))
    assert d.dtype == np.float32 and s.dtype == np.int16


def test_incomplete_cases_are_detected(tmp_path):
    data, seg, props, locs = _case()
    for c in ("a", "b", "c", "d", "e"):
        write_case(tmp_path, c, data, seg, props, locs)
    assert list_cases(tmp_path) == ["a", "b", "c", "d", "e"]
    (tmp_path / "a.case.json").unlink()  # never finished
    with open(tmp_path / "b.data.npy", "r+b") as f:  # truncated
        f.truncate(os.path.getsize(tmp_path / "b.data.npy") - 4)
    (tmp_path / "c.locs.npy").unlink()  # a file lost
    np.save(tmp_path / "d.seg.npy", seg.astype(np.int16))  # replaced by something else
    (tmp_path / "e.case.json").write_text("{not json")
    assert list_cases(tmp_path) == []
    assert list_cases(tmp_path, complete_only=False) == ["b", "c", "d", "e"]
    for c in "abcde":
        assert not case_is_complete(tmp_path, c)
    with pytest.raises(StorageError, match="case a: not preprocessed"):
        open_case(tmp_path, "a")
    with pytest.raises(StorageError, match="case b: .*b.data.npy"):
        open_case(tmp_path, "b")
    with pytest.raises(StorageError, match="case e: .*unreadable"):
        open_case(tmp_path, "e")


def test_source_mismatch_and_format_version(tmp_path):
    data, seg, props, locs = _case()
    write_case(tmp_path, "a", data, seg, props, locs, source=[["a_0000.nii.gz", 10, 123]])
    assert case_is_complete(tmp_path, "a", [["a_0000.nii.gz", 10, 123]])
    assert not case_is_complete(tmp_path, "a", [["a_0000.nii.gz", 10, 124]])
    meta = json.loads((tmp_path / "a.case.json").read_text())
    meta["version"] = 99
    (tmp_path / "a.case.json").write_text(json.dumps(meta))
    with pytest.raises(StorageError, match="v99.*--clean"):
        open_case(tmp_path, "a")


def test_rewrite_replaces_the_previous_version(tmp_path):
    data, seg, props, locs = _case()
    write_case(tmp_path, "a", data, seg, props, locs)
    write_case(tmp_path, "a", data[:1] * 2, None, props)
    h = open_case(tmp_path, "a")
    np.testing.assert_array_equal(h.data, data[:1] * 2)
    assert h.seg is None and h.class_locations is None
    assert not (tmp_path / "a.seg.npy").exists() and not (tmp_path / "a.locs.npy").exists()


def _killed_writer(folder, when):
    """Child process: dies (like SIGKILL) in the middle of write_case."""
    data, seg, props, locs = _case(2, shape=(1, 40, 40, 40))
    if when == "while writing":
        real = storage._write_npy

        def write_then_die(path, array):
            real(path, array)
            os._exit(9)

        storage._write_npy = write_then_die
    else:  # after the first array was renamed into place
        real_replace = os.replace

        def replace_then_die(src, dst):
            real_replace(src, dst)
            os._exit(9)

        storage.os.replace = replace_then_die
    write_case(folder, "victim", data, seg, props, locs)


@pytest.mark.parametrize("when", ["while writing", "between renames"])
def test_killed_writer_leaves_no_complete_looking_case(tmp_path, when):
    data, seg, props, locs = _case()
    write_case(tmp_path, "victim", data, seg, props, locs)  # an older complete version
    write_case(tmp_path, "bystander", data, seg, props, locs)
    p = multiprocessing.get_context("fork").Process(target=_killed_writer, args=(tmp_path, when))
    p.start()
    p.join()
    assert p.exitcode == 9
    assert not case_is_complete(tmp_path, "victim")
    assert list_cases(tmp_path) == ["bystander"]
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert leftovers  # the arrays not yet renamed
    assert storage.remove_temporary_files(tmp_path) == len(leftovers)
    write_case(tmp_path, "victim", data, seg, props, locs)  # a rerun completes it
    assert list_cases(tmp_path) == ["bystander", "victim"]


def test_bad_arguments_name_the_case(tmp_path):
    data, seg, props, locs = _case()
    with pytest.raises(StorageError, match="case x: data must be float32"):
        write_case(tmp_path, "x", data.astype(np.float64), seg, props)
    with pytest.raises(StorageError, match="case x: seg must be int8/int16"):
        write_case(tmp_path, "x", data, seg.astype(np.int32), props)
    with pytest.raises(StorageError, match="invalid case id"):
        write_case(tmp_path, "../x", data, seg, props)
    with pytest.raises(StorageError, match="invalid case id"):
        write_case(tmp_path, ".hidden", data, seg, props)
    with pytest.raises(StorageError, match=r"case x: class 1 locations have shape \(3, 2\)"):
        write_case(tmp_path, "x", data, seg, props, {1: np.zeros((3, 2), np.int64)})
    with pytest.raises(StorageError, match="case x: class 2 has locations outside the image"):
        write_case(tmp_path, "x", data, seg, props, {2: np.array([[0, 11, 0, 0]])})
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_case(tmp_path, "x", data, seg, {"obj": object()})
    assert list(tmp_path.iterdir()) == []  # nothing written by the failed calls


def test_folder_info_round_trip(tmp_path):
    assert storage.read_folder_info(tmp_path) is None
    storage.write_folder_info(tmp_path, {"signature": {"a": [1, 2]}})
    info = storage.read_folder_info(tmp_path)
    assert info["signature"] == {"a": [1, 2]} and info["format"] == storage.FORMAT
    assert list_cases(tmp_path) == []
