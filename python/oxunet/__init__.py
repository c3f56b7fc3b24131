"""oxunet: self-configuring medical image segmentation (nnU-Net v2 semantics), Rust-accelerated."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("oxunet")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
