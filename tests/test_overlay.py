"""oxunet.overlay: PNG grids decode (with an independent decoder), have the expected size, and
label pixels are coloured exactly where the label is."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from synthetic import make_dataset

from oxunet.cli import main
from oxunet.overlay import (
    PALETTE,
    choose_slices,
    encode_png,
    label_colour,
    render_overlay,
    window,
    write_png,
)


def _decode(path) -> np.ndarray:
    """PNG → uint8 array with PIL when present, else matplotlib (both independent of our encoder)."""
    try:
        from PIL import Image

        return np.asarray(Image.open(path).convert("RGB"))
    except ImportError:
        mimage = pytest.importorskip("matplotlib.image", reason="needs PIL or matplotlib to decode PNGs")
        return (mimage.imread(str(path))[..., :3] * 255).round().astype(np.uint8)


def test_png_round_trips_through_an_independent_decoder(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(_decode(tmp_path / "a.png"), rgb)
    data = encode_png(rgb)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert zlib.crc32(data[12:29]) & 0xFFFFFFFF == int.from_bytes(data[29:33], "big")  # IHDR: 13 bytes + CRC


def test_label_pixels_coloured_where_the_label_is():
    image = np.full((1, 10, 12), 5.0)
    image[0, 0, 0] = 0.0  # a range so the window is defined
    label = np.zeros((1, 10, 12), np.uint8)
    label[0, 2:7, 3:9] = 1
    label[0, 4, 5] = 2
    rgb = render_overlay(image, label, slices=[0], alpha=1.0, min_tile=1)
    assert rgb.shape == (10, 12, 3)
    np.testing.assert_array_equal(rgb[label[0] == 1], np.broadcast_to(PALETTE[0], ((label[0] == 1).sum(), 3)))
    assert tuple(rgb[4, 5]) == label_colour(2) == tuple(PALETTE[1])
    grey = rgb[label[0] == 0]
    assert (grey[:, 0] == grey[:, 1]).all() and (grey[:, 1] == grey[:, 2]).all()  # background stays grey
    # Half opacity: interior blended, edges opaque.
    half = render_overlay(image, label, slices=[0], alpha=0.5, min_tile=1)
    g = int(half[9, 11, 0])  # a background pixel's grey level
    assert tuple(half[3, 4]) == tuple(round(0.5 * g + 0.5 * c) for c in PALETTE[0])
    assert tuple(half[2, 5]) == tuple(PALETTE[0])  # top edge of the label


def test_grid_size_and_square_pixels():
    image = np.random.default_rng(1).random((8, 20, 30))
    rgb = render_overlay(image, None, axis="z", slices=4, spacing=(5.0, 1.0, 1.0), min_tile=40)
    # 4 tiles in a 2x2 grid, tiles 20x30 scaled by ceil(40/20) = 2, 4 px gaps.
    assert rgb.shape == (2 * 40 + 4, 2 * 60 + 4, 3)
    side = render_overlay(image, None, axis="x", slices=[3], spacing=(5.0, 1.0, 1.0), min_tile=1)
    assert side.shape == (40, 20, 3)  # 8 slices of 5 mm → 40 px of 1 mm


def test_choose_slices_prefers_foreground_else_middle():
    label = np.zeros((10, 4, 4), np.uint8)
    label[2, :2] = 1
    label[7] = 1
    label[5, 0, 0] = 1
    assert choose_slices(label.shape, 0, 2, label) == [2, 7]
    assert choose_slices(label.shape, 0, 5, label) == [2, 5, 7]  # only slices with foreground
    assert choose_slices((10, 4, 4), 0, 1) == [5]
    assert choose_slices((10, 4, 4), 0, 3) == [2, 4, 7]


def test_window_percentiles():
    out = window(np.arange(101, dtype=np.float32), (10, 90))
    assert out[10] == 0 and out[90] == 255 and out[50] == 128 and out[0] == 0 and out[100] == 255


def test_overlay_cli_single_case_and_dataset(tmp_path):
    root = make_dataset(tmp_path / "Dataset901_Ov", [(12, 24, 28)] * 3, [(3.0, 1.0, 1.0)] * 3, labels=2)
    runner = CliRunner()
    out = tmp_path / "one.png"
    result = runner.invoke(main, ["overlay", str(root / "imagesTr" / "case_000_0000.nii.gz"),
                                  str(root / "labelsTr" / "case_000.nii.gz"), "-o", str(out), "--slices", "1"])
    assert result.exit_code == 0, result.output
    rgb = _decode(out)
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "labelsTr" / "case_000.nii.gz")))
    k = int(np.argmax((seg > 0).sum(axis=(1, 2))))
    assert rgb.shape == (24 * 6, 28 * 6, 3)  # ceil(128 / 24) = 6
    tile_label = np.kron(seg[k], np.ones((6, 6), np.uint8))
    coloured = (rgb[..., 0] != rgb[..., 1]) | (rgb[..., 1] != rgb[..., 2])
    np.testing.assert_array_equal(coloured, tile_label > 0)

    qc = tmp_path / "qc"
    result = runner.invoke(main, ["overlay", "--dataset", str(root), "-o", str(qc), "--cases", "2", "--axis", "y"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in qc.iterdir()) == ["case_000.png", "case_001.png"]
    assert _decode(qc / "case_001.png").ndim == 3


def test_overlay_cli_reports_misaligned_label(tmp_path):
    root = make_dataset(tmp_path / "Dataset902_Bad", [(6, 16, 16), (6, 16, 16)], [(1.0, 1.0, 1.0)] * 2, labels=1)
    bad = sitk.Image(16, 16, 5, sitk.sitkUInt8)
    sitk.WriteImage(bad, str(root / "labelsTr" / "case_001.nii.gz"))
    result = CliRunner().invoke(main, ["overlay", "--dataset", str(root), "-o", str(tmp_path / "qc")])
    assert result.exit_code == 1
    assert "case_001" in result.output and "shape" in result.output and "1 of 2 case(s)" in result.output
    assert (tmp_path / "qc" / "case_000.png").is_file()


def test_overlay_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="label shape"):
        render_overlay(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)))
