"""Reading and writing images and segmentations with nnU-Net's conventions.

Every reader returns ``(float32 array (c, x, y, z), properties)`` where ``properties["spacing"]``
follows the array's axis order (for SimpleITK: ITK's spacing reversed) and the rest of the
properties is what the matching writer needs to restore the geometry. 2D images are pseudo-3D
``(c, 1, H, W)`` with a first-axis spacing of 999 × max spacing, as nnU-Net does.
"""

from .atomic import atomic_path
from .errors import ImageReadError
from .pickles import UnsafePickleError, load_restricted_pickle
from .readers import (
    IMAGE_IOS,
    ImageIO,
    NaturalImage2DIO,
    NibabelIO,
    SimpleITKIO,
    Tiff3DIO,
    io_class_by_name,
    select_image_io,
)

__all__ = [
    "IMAGE_IOS",
    "ImageIO",
    "ImageReadError",
    "NaturalImage2DIO",
    "NibabelIO",
    "SimpleITKIO",
    "Tiff3DIO",
    "UnsafePickleError",
    "atomic_path",
    "io_class_by_name",
    "load_restricted_pickle",
    "select_image_io",
]
