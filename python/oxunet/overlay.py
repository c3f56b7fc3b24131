"""Image + label overlays as PNG grids for quick QC (predictions, or the alignment of a new dataset).

No plotting library needed: slices are windowed by percentiles, labels blended in with one colour
per label value (edges drawn opaque so thin structures stay visible), tiles scaled to square
physical pixels, and the grid written as an 8-bit RGB PNG with zlib.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

# Label k gets PALETTE[(k - 1) % len]: distinct, saturated colours (tab10 without grey).
PALETTE = np.array([
    (255, 50, 50), (50, 200, 50), (60, 120, 255), (255, 200, 0), (230, 60, 230),
    (0, 220, 220), (255, 130, 30), (150, 90, 255), (140, 255, 120), (255, 120, 170),
], dtype=np.uint8)
AXES = {"z": 0, "y": 1, "x": 2}
_GAP = 4  # pixels between tiles


def label_colour(value: int) -> tuple[int, int, int]:
    r, g, b = (int(c) for c in PALETTE[(int(value) - 1) % len(PALETTE)])
    return r, g, b


def choose_slices(shape: Sequence[int], axis: int, count: int, label: np.ndarray | None = None) -> list[int]:
    """``count`` slice indices along ``axis``: the ones with most foreground when the label has
    any (ascending order), else evenly spread around the middle."""
    n = int(shape[axis])
    count = max(1, min(count, n))
    if label is not None and np.any(label > 0):
        other = tuple(a for a in range(label.ndim) if a != axis)
        fg = np.count_nonzero(label > 0, axis=other)
        most = np.argsort(-fg, kind="stable")[:count]
        top = [int(i) for i in most if fg[i] > 0] or [int(np.argmax(fg))]
        return sorted(top)
    if count == 1:
        return [n // 2]
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, count + 2)[1:-1]})


def window(image: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """uint8 grey levels: the given percentiles of the finite voxels mapped to 0 and 255."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros(image.shape, np.uint8)
    lo, hi = np.percentile(finite, percentiles)
    if hi <= lo:
        hi = lo + 1
    out = (np.clip((np.nan_to_num(image, nan=lo) - lo) / (hi - lo), 0, 1) * 255).round()
    return out.astype(np.uint8)


def _edges(label: np.ndarray) -> np.ndarray:
    """Pixels whose 4-neighbourhood holds another value (label boundaries, inside the label)."""
    edge = np.zeros(label.shape, bool)
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    edge[:-1, :] |= label[:-1, :] != label[1:, :]
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[:, :-1] |= label[:, :-1] != label[:, 1:]
    return edge & (label > 0)


def _resize_nearest(tile: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    rows = np.minimum((np.arange(out_shape[0]) + 0.5) * tile.shape[0] / out_shape[0], tile.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(out_shape[1]) + 0.5) * tile.shape[1] / out_shape[1], tile.shape[1] - 1).astype(int)
    return tile[rows][:, cols]


def _tile_shape(shape2d: Sequence[int], spacing2d: Sequence[float], min_size: int) -> tuple[int, int]:
    """Output size giving square physical pixels, enlarged so the shorter side is >= min_size."""
    h_mm, w_mm = shape2d[0] * spacing2d[0], shape2d[1] * spacing2d[1]
    px = min(spacing2d)  # finest spacing kept
    h, w = max(1, round(h_mm / px)), max(1, round(w_mm / px))
    scale = max(1, int(np.ceil(min_size / min(h, w))))
    return h * scale, w * scale


def render_slice(grey: np.ndarray, label: np.ndarray | None, alpha: float = 0.4) -> np.ndarray:
    """RGB (H, W, 3) of one windowed slice with the label blended in and its edges opaque."""
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if label is not None and np.any(label > 0):
        colours = PALETTE[(np.maximum(label.astype(np.int64), 1) - 1) % len(PALETTE)].astype(np.float32)
        fg = label > 0
        rgb[fg] = (1 - alpha) * rgb[fg] + alpha * colours[fg]
        edge = _edges(label)
        rgb[edge] = colours[edge]
    return rgb.round().astype(np.uint8)


def render_overlay(
    image: np.ndarray,
    label: np.ndarray | None = None,
    axis: int | str = 0,
    slices: int | Sequence[int] = 6,
    alpha: float = 0.4,
    spacing: Sequence[float] | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    columns: int | None = None,
    min_tile: int = 128,
) -> np.ndarray:
    """A grid of slices of a 3D ``image`` (numpy axis order) with ``label`` overlaid, as RGB uint8.

    ``axis``: array axis (or "z"/"y"/"x" = 0/1/2) to slice along. ``slices``: how many to show
    (the most-foreground ones, or around the middle without foreground) or the exact indices.
    ``spacing`` (array order) makes the tiles' pixels square in mm. The whole volume is windowed
    once, by ``percentiles``, so the tiles are comparable.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"image must be 2D or 3D, got shape {image.shape}")
    if label is not None:
        label = np.asarray(label)
        if label.ndim == 2:
            label = label[None]
        if label.shape != image.shape:
            raise ValueError(f"label shape {label.shape} differs from image shape {image.shape}")
    axis = AXES[axis] if isinstance(axis, str) else int(axis)
    if not 0 <= axis < 3:
        raise ValueError(f"axis must be 0, 1, 2 or z, y, x; got {axis}")
    if isinstance(slices, (int, np.integer)):
        indices = choose_slices(image.shape, axis, int(slices), label)
    else:
        indices = [int(i) for i in slices]
        bad = [i for i in indices if not 0 <= i < image.shape[axis]]
        if bad:
            raise ValueError(f"slice(s) {bad} outside 0..{image.shape[axis] - 1} along axis {axis}")
    grey = window(image.astype(np.float32), percentiles)
    spacing = tuple(float(s) for s in spacing) if spacing is not None else (1.0, 1.0, 1.0)
    in_plane = tuple(s for a, s in enumerate(spacing) if a != axis)
    tiles = []
    for i in indices:
        g = np.take(grey, i, axis=axis)
        lab = np.take(label, i, axis=axis) if label is not None else None
        shape = _tile_shape(g.shape, in_plane, min_tile)
        g = _resize_nearest(g, shape)
        lab = _resize_nearest(lab, shape) if lab is not None else None
        tiles.append(render_slice(g, lab, alpha))
    return _grid(tiles, columns)


def _grid(tiles: list[np.ndarray], columns: int | None) -> np.ndarray:
    n = len(tiles)
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    h, w = tiles[0].shape[:2]
    out = np.zeros((rows * h + (rows - 1) * _GAP, columns * w + (columns - 1) * _GAP, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        out[r * (h + _GAP): r * (h + _GAP) + h, c * (w + _GAP): c * (w + _GAP) + w] = tile
    return out


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 RGB or (H, W) grey array (filter 0, zlib level 6)."""
    arr = np.ascontiguousarray(rgb, dtype=np.uint8)
    if arr.ndim == 2:
        colour_type, channels = 0, 1
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        colour_type, channels = (2, 3) if arr.shape[2] == 3 else (6, 4)
    else:
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    h, w = arr.shape[:2]
    raw = np.zeros((h, 1 + w * channels), np.uint8)  # each row: filter byte 0 + pixels
    raw[:, 1:] = arr.reshape(h, w * channels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b"")


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write ``rgb`` as a PNG atomically (parent folders created)."""
    from .io import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_png(rgb))
    return path


def _file_ending(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def load_volume(path: str | Path, reader=None) -> tuple[np.ndarray, tuple[float, ...]]:
    """First channel of an image file as a 3D array (numpy order) and its spacing, via oxunet.io."""
    from .io import select_image_io

    path = Path(path)
    reader = reader or select_image_io(_file_ending(path), path)
    data, props = reader.read_images([path])
    return data[0], tuple(float(s) for s in props["spacing"])


def overlay_files(
    image_path: str | Path, label_path: str | Path | None, out_path: str | Path, **kwargs,
) -> Path:
    """Render ``image_path`` (+ ``label_path``) to ``out_path``; kwargs as :func:`render_overlay`."""
    image, spacing = load_volume(image_path)
    label = None
    if label_path is not None:
        label, label_spacing = load_volume(label_path)
        if label.shape != image.shape:
            raise ValueError(f"{label_path}: shape {label.shape} differs from the image's {image.shape} ({image_path})")
        if not np.allclose(label_spacing, spacing, rtol=1e-3):
            raise ValueError(f"{label_path}: spacing {label_spacing} differs from the image's {spacing} ({image_path})")
        label = np.rint(label).astype(np.int32)
    return write_png(out_path, render_overlay(image, label, spacing=spacing, **kwargs))


def overlay_dataset(dataset_dir: str | Path, out_dir: str | Path, cases: int = 5, **kwargs) -> list[tuple[str, Path | None, str | None]]:
    """QC PNGs ``<out_dir>/<case>.png`` for the first ``cases`` training cases of a raw dataset.

    Returns (case, png or None, problem or None) per case: a case whose label does not match its
    image (shape, spacing) or cannot be read is reported instead of stopping the others.
    """
    from .dataset import load_dataset_json, training_cases

    dataset_dir = Path(dataset_dir)
    info = load_dataset_json(dataset_dir / "dataset.json")
    results: list[tuple[str, Path | None, str | None]] = []
    for case, entry in list(training_cases(dataset_dir, info).items())[:cases]:
        label = entry["label"] if entry["label"] is not None and Path(entry["label"]).is_file() else None
        try:
            png = overlay_files(entry["images"][0], label, Path(out_dir) / f"{case}.png", **kwargs)
            results.append((case, png, None if label is not None else "no label file"))
        except Exception as e:  # one broken case should not hide the others' pictures
            results.append((case, None, str(e)))
    return results
