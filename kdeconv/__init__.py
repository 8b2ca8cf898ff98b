"""kdeconv: separate mixed EBSD Kikuchi patterns into their two constituents."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kdeconv")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

from kdeconv.errors import InputError

__all__ = ["__version__", "InputError"]
