"""Image readers/writers equivalent to nnU-Net's ``nnunetv2.imageio`` classes.

The class names are nnU-Net's, so ``overwrite_image_reader_writer`` in a dataset.json written
for nnU-Net selects the same behaviour here.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import ImageReadError

PathLike = str | os.PathLike


class ImageIO:
    """Base of the readers. Subclasses set ``supported_file_endings`` and implement the methods."""

    supported_file_endings: tuple[str, ...] = ()

    def read_images(self, paths: Sequence[PathLike]) -> tuple[np.ndarray, dict]:
        """Reads the channel files of one case into a float32 ``(c, x, y, z)`` array."""
        raise NotImplementedError

    def read_seg(self, path: PathLike) -> tuple[np.ndarray, dict]:
        """Reads a segmentation as float32 ``(1, x, y, z)`` (integer conversion is the caller's)."""
        return self.read_images([path])

    def write_seg(self, seg: np.ndarray, path: PathLike, properties: dict) -> None:
        """Writes a 3D integer array ``(x, y, z)`` (``(1, H, W)`` for 2D) with the input's geometry."""
        raise NotImplementedError


def _label_dtype(seg: np.ndarray) -> np.dtype:
    top = int(seg.max()) if seg.size else 0
    return np.dtype(np.uint8) if top < 255 else np.dtype(np.uint16)


class SimpleITKIO(ImageIO):
    """.nii.gz/.nii/.nrrd/.mha/.gipl through SimpleITK; spacing reversed to numpy axis order."""

    supported_file_endings: tuple[str, ...] = (".nii.gz", ".nrrd", ".mha", ".gipl")

    def read_images(self, paths):
        import SimpleITK as sitk

        arrays, spacings, itk_geometry = [], [], []
        for p in paths:
            try:
                img = sitk.ReadImage(str(p))
            except RuntimeError as e:
                raise ImageReadError(f"{p}: cannot be read by SimpleITK ({str(e).strip().splitlines()[-1]})") from None
            arr = sitk.GetArrayFromImage(img)
            sp = img.GetSpacing()
            if arr.ndim == 2:
                arr = arr[None, None]
                sp_np = (999.0 * max(sp), *sp[::-1])
            elif arr.ndim == 3:
                arr = arr[None]
                sp_np = tuple(sp[::-1])
            elif arr.ndim == 4:  # several channels in one file
                sp_np = tuple(sp[::-1][1:])
            else:
                raise ImageReadError(f"{p}: {arr.ndim}D images are not supported (expected 2D, 3D or 4D)")
            arrays.append(arr)
            spacings.append(tuple(abs(float(s)) for s in sp_np))
            itk_geometry.append((tuple(sp), img.GetOrigin(), img.GetDirection()))
        _check_channels_agree(paths, [a.shape[1:] for a in arrays], spacings)
        for p, (_, origin, direction) in zip(paths[1:], itk_geometry[1:]):
            if not np.allclose(origin, itk_geometry[0][1]) or not np.allclose(direction, itk_geometry[0][2]):
                warnings.warn(f"{p}: origin/direction differ from {paths[0]} (continuing with the first file's)", stacklevel=2)
        data = np.vstack(arrays).astype(np.float32, copy=False)
        sp, origin, direction = itk_geometry[0]
        props = {
            "spacing": list(spacings[0]),
            "sitk_stuff": {"spacing": list(sp), "origin": list(origin), "direction": list(direction)},
        }
        return data, props

    def write_seg(self, seg, path, properties):
        import SimpleITK as sitk

        if seg.ndim != 3:
            raise ValueError(f"seg: expected 3 dimensions, got shape {seg.shape}")
        stuff = properties["sitk_stuff"]
        if len(stuff["spacing"]) == 2:
            seg = seg[0]
        img = sitk.GetImageFromArray(seg.astype(_label_dtype(seg), copy=False))
        img.SetSpacing(tuple(stuff["spacing"]))
        img.SetOrigin(tuple(stuff["origin"]))
        img.SetDirection(tuple(stuff["direction"]))
        with atomic_path(path) as tmp:
            sitk.WriteImage(img, str(tmp), True)


class Tiff3DIO(ImageIO):
    """3D .tif/.tiff through tifffile; spacing from a ``{case}.json`` sidecar (array-axis order)."""

    supported_file_endings = (".tif", ".tiff")

    @staticmethod
    def _sidecar(path: Path) -> Path:
        name = path.name
        for ending in (".tiff", ".tif"):
            if name.endswith(ending):
                name = name[: -len(ending)]
        if len(name) > 5 and name[-5] == "_" and name[-4:].isdigit():
            name = name[:-5]  # channel suffix: the sidecar belongs to the case
        return path.with_name(name + ".json")

    def read_images(self, paths):
        import tifffile

        arrays = []
        for p in paths:
            try:
                arr = tifffile.imread(str(p))
            except Exception as e:  # tifffile raises many types
                raise ImageReadError(f"{p}: cannot be read as TIFF ({e})") from None
            if arr.ndim != 3:
                raise ImageReadError(f"{p}: expected a 3D TIFF, got {arr.ndim} dimensions (use .png for 2D images)")
            arrays.append(arr[None])
        sidecar = self._sidecar(Path(paths[0]))
        if sidecar.is_file():
            spacing = [float(v) for v in json.loads(sidecar.read_text())["spacing"]]
        else:
            warnings.warn(f"{paths[0]}: no spacing sidecar {sidecar.name}; assuming (1, 1, 1)", stacklevel=2)
            spacing = [1.0, 1.0, 1.0]
        _check_channels_agree(paths, [a.shape[1:] for a in arrays], [tuple(spacing)] * len(arrays))
        return np.vstack(arrays).astype(np.float32, copy=False), {"spacing": spacing}

    def write_seg(self, seg, path, properties):
        import tifffile

        path = Path(path)
        with atomic_path(path) as tmp:
            tifffile.imwrite(str(tmp), seg.astype(_label_dtype(seg), copy=False), compression="zlib")
        with atomic_path(self._sidecar(path)) as tmp:
            tmp.write_text(json.dumps({"spacing": list(properties["spacing"])}))


class NaturalImage2DIO(ImageIO):
    """2D natural images (.png/.bmp/.tif): grayscale → (1, 1, H, W), RGB(A) → (c, 1, H, W), spacing (999, 1, 1)."""

    supported_file_endings = (".png", ".bmp", ".tif")

    @staticmethod
    def _read_2d(path: PathLike) -> np.ndarray:
        if str(path).lower().endswith(".tif"):
            import tifffile

            return tifffile.imread(str(path))
        import SimpleITK as sitk

        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))

    def read_images(self, paths):
        arrays = []
        for p in paths:
            try:
                arr = self._read_2d(p)
            except Exception as e:  # SimpleITK and tifffile raise several types
                raise ImageReadError(f"{p}: cannot be read as an image ({e})") from None
            if arr.ndim == 2:
                arrays.append(arr[None, None])
            elif arr.ndim == 3 and arr.shape[-1] in (3, 4):
                arrays.append(np.moveaxis(arr, -1, 0)[:, None])
            else:
                raise ImageReadError(f"{p}: unexpected image shape {arr.shape} (expected H×W, H×W×3 or H×W×4)")
        _check_channels_agree(paths, [a.shape[1:] for a in arrays], [(999.0, 1.0, 1.0)] * len(arrays))
        return np.vstack(arrays).astype(np.float32, copy=False), {"spacing": [999.0, 1.0, 1.0]}

    def write_seg(self, seg, path, properties):
        if seg.ndim != 3 or seg.shape[0] != 1:
            raise ValueError(f"seg: expected shape (1, H, W), got {seg.shape}")
        plane = seg[0].astype(_label_dtype(seg), copy=False)
        with atomic_path(path) as tmp:
            if str(path).lower().endswith(".tif"):
                import tifffile

                tifffile.imwrite(str(tmp), plane, compression="zlib")
            else:
                import SimpleITK as sitk

                sitk.WriteImage(sitk.GetImageFromArray(plane), str(tmp), True)


def _check_channels_agree(paths, shapes, spacings) -> None:
    for p, shape, sp in zip(paths[1:], shapes[1:], spacings[1:]):
        if shape != shapes[0]:
            raise ImageReadError(f"{p}: shape {tuple(shape)} differs from {paths[0]} {tuple(shapes[0])}")
        if not np.allclose(sp, spacings[0]):
            raise ImageReadError(f"{p}: spacing {tuple(sp)} differs from {paths[0]} {tuple(spacings[0])}")


class NibabelIO(SimpleITKIO):
    """nnU-Net picks its nibabel reader for plain ``.nii``; arrays and spacing come out identical to
    SimpleITK's (nnU-Net transposes nibabel's array to SimpleITK's order), so we read through
    SimpleITK under nnU-Net's class name, which keeps plans files interchangeable."""

    supported_file_endings = (".nii", ".nii.gz")


# Auto-detection order as nnU-Net's (NaturalImage2DIO first so .tif 2D pictures are tried as such).
IMAGE_IOS: tuple[type[ImageIO], ...] = (NaturalImage2DIO, SimpleITKIO, Tiff3DIO, NibabelIO)


def io_class_by_name(name: str) -> type[ImageIO] | None:
    """The reader class for an ``overwrite_image_reader_writer`` value (None for unknown/"None")."""
    return {c.__name__: c for c in IMAGE_IOS}.get(name)


def select_image_io(file_ending: str, example_file: PathLike | None = None, override: str | None = None) -> ImageIO:
    """Picks the reader as nnU-Net does: the override if known, else the first class supporting
    ``file_ending`` that can open ``example_file`` (when given)."""
    if override and override != "None":
        cls = io_class_by_name(override)
        if cls is not None:
            return cls()
        warnings.warn(f"overwrite_image_reader_writer {override!r} is unknown; detecting the reader from the file ending", stacklevel=2)
    errors = []
    for cls in IMAGE_IOS:
        if file_ending.lower() not in cls.supported_file_endings:
            continue
        if example_file is None:
            return cls()
        try:
            cls().read_images([example_file])
            return cls()
        except ImageReadError as e:
            errors.append(f"{cls.__name__}: {e}")
    detail = ("; ".join(errors)) if errors else "no reader supports this file ending"
    raise ImageReadError(f"{example_file or file_ending}: no reader can open it ({detail})")
