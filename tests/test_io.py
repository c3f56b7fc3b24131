"""Readers/writers: nnU-Net's axis and spacing conventions, geometry round trips, clear errors."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from oxunet.io import ImageReadError, NaturalImage2DIO, SimpleITKIO, Tiff3DIO, atomic_path, select_image_io


def _write_itk(path, arr, spacing=(0.8, 0.7, 3.0), origin=(1.0, 2.0, 3.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0) if arr.ndim == 3 else (1.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(img, str(path))
    return img


@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".mha"])
def test_simpleitk_roundtrip_keeps_geometry_and_reverses_spacing(tmp_path, ending):
    arr = np.random.default_rng(0).integers(0, 3, (5, 6, 7)).astype(np.int16)
    _write_itk(tmp_path / f"a_0000{ending}", arr)
    io = select_image_io(ending, tmp_path / f"a_0000{ending}")
    assert isinstance(io, SimpleITKIO)
    data, props = io.read_images([tmp_path / f"a_0000{ending}"])
    assert data.shape == (1, 5, 6, 7) and data.dtype == np.float32
    assert props["spacing"] == pytest.approx([3.0, 0.7, 0.8])
    io.write_seg(data[0].astype(np.uint8), tmp_path / f"out{ending}", props)
    back = sitk.ReadImage(str(tmp_path / f"out{ending}"))
    assert np.array_equal(sitk.GetArrayFromImage(back), arr)
    assert back.GetSpacing() == pytest.approx((0.8, 0.7, 3.0))
    assert back.GetOrigin() == pytest.approx((1.0, 2.0, 3.0))
    assert back.GetDirection() == pytest.approx((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_2d_itk_image_is_pseudo_3d(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    _write_itk(tmp_path / "a_0000.nii.gz", arr, spacing=(0.5, 2.0), origin=(0.0, 0.0))
    data, props = SimpleITKIO().read_images([tmp_path / "a_0000.nii.gz"])
    assert data.shape == (1, 1, 3, 4)
    assert props["spacing"] == pytest.approx([999 * 2.0, 2.0, 0.5])


def test_channel_shape_mismatch_names_the_file(tmp_path):
    _write_itk(tmp_path / "a_0000.nii.gz", np.zeros((4, 4, 4), np.float32))
    _write_itk(tmp_path / "a_0001.nii.gz", np.zeros((4, 4, 5), np.float32))
    with pytest.raises(ImageReadError, match=r"a_0001\.nii\.gz: shape \(4, 4, 5\) differs"):
        SimpleITKIO().read_images([tmp_path / "a_0000.nii.gz", tmp_path / "a_0001.nii.gz"])


def test_channel_spacing_mismatch_names_the_file(tmp_path):
    _write_itk(tmp_path / "a_0000.nii.gz", np.zeros((4, 4, 4), np.float32))
    _write_itk(tmp_path / "a_0001.nii.gz", np.zeros((4, 4, 4), np.float32), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ImageReadError, match=r"a_0001\.nii\.gz: spacing"):
        SimpleITKIO().read_images([tmp_path / "a_0000.nii.gz", tmp_path / "a_0001.nii.gz"])


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "broken_0000.nii.gz"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="broken_0000.nii.gz"):
        SimpleITKIO().read_images([bad])
    with pytest.raises(ImageReadError, match="broken_0000.nii.gz: no reader can open it"):
        select_image_io(".nii.gz", bad)


def test_png_rgb_and_gray(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (6, 5, 3)).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "c_0000.png"))
    io = select_image_io(".png", tmp_path / "c_0000.png")
    assert isinstance(io, NaturalImage2DIO)
    data, props = io.read_images([tmp_path / "c_0000.png"])
    assert data.shape == (3, 1, 6, 5) and props["spacing"] == [999.0, 1.0, 1.0]
    assert np.array_equal(data[:, 0], np.moveaxis(rgb, -1, 0))
    seg = (rgb[..., 0] > 128).astype(np.uint8)[None]
    io.write_seg(seg, tmp_path / "c.png", props)
    seg_back, _ = io.read_seg(tmp_path / "c.png")
    assert np.array_equal(seg_back[0], seg)


def test_tiff_reads_spacing_sidecar(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    arr = np.random.default_rng(2).random((4, 5, 6)).astype(np.float32)
    tifffile.imwrite(tmp_path / "t_0000.tif", arr)
    (tmp_path / "t.json").write_text(json.dumps({"spacing": [3.0, 0.5, 0.25]}))
    io = select_image_io(".tif", tmp_path / "t_0000.tif")
    assert isinstance(io, Tiff3DIO)
    data, props = io.read_images([tmp_path / "t_0000.tif"])
    assert data.shape == (1, 4, 5, 6) and props["spacing"] == [3.0, 0.5, 0.25]
    io.write_seg((arr > 0.5).astype(np.uint8), tmp_path / "seg.tif", props)
    assert json.loads((tmp_path / "seg.json").read_text())["spacing"] == [3.0, 0.5, 0.25]


def test_override_reader_by_nnunet_class_name(tmp_path):
    _write_itk(tmp_path / "a_0000.nii.gz", np.zeros((3, 3, 3), np.float32))
    assert isinstance(select_image_io(".nii.gz", None, override="SimpleITKIO"), SimpleITKIO)
    with pytest.warns(UserWarning, match="unknown"):
        assert isinstance(select_image_io(".nii.gz", tmp_path / "a_0000.nii.gz", override="NoSuchIO"), SimpleITKIO)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz")
        tmp.write_text("whole")
    assert target.read_text() == "whole"


def test_plain_nii_uses_nnunets_reader_name(tmp_path):
    from oxunet.io import NibabelIO

    _write_itk(tmp_path / "a_0000.nii", np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    io = select_image_io(".nii", tmp_path / "a_0000.nii")
    assert type(io) is NibabelIO  # nnU-Net's auto-detection picks NibabelIO for .nii
    data, props = io.read_images([tmp_path / "a_0000.nii"])
    assert data.shape == (1, 3, 4, 5) and props["spacing"] == pytest.approx([3.0, 0.7, 0.8])
