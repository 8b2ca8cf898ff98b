"""Every use of kikuchipy's private API, in one place.

kdeconv reads vendor headers with kikuchipy's plugin readers (without their lazy pattern arrays),
picks a file's plugin as ``kikuchipy.load`` does, and projects master patterns with kikuchipy's
numba kernels for one detector geometry per pattern. None of that is public API, so each use sits
here, behind a kdeconv name, and pyproject pins kikuchipy to the versions these were checked with
(``SUPPORTED``); a new kikuchipy that moves one of them breaks this module only.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["SUPPORTED", "plugins", "plugin_from_footprints", "plugin_reader", "h5ebsd_writer",
           "direction_cosines", "detector_to_sample_matrix", "project_with_varying_pc", "master_arrays"]

# kikuchipy versions this module was checked with (pyproject: kikuchipy>=0.11,<0.14).
SUPPORTED = ((0, 11), (0, 14))

# kdeconv's h5ebsd readers: kikuchipy plugin name -> reader class in the plugin's ``_api``.
_H5EBSD_READERS = {
    "kikuchipy_h5ebsd": "KikuchipyH5EBSDReader",
    "edax_h5ebsd": "EDAXH5EBSDReader",
    "bruker_h5ebsd": "BrukerH5EBSDReader",
    "oxford_h5ebsd": "OxfordH5EBSDReader",
}
# Other readers used: plugin name -> object in the plugin's ``_api``.
_READERS = {
    "edax_binary": "EDAXBinaryFileReader",
    "oxford_binary": "OxfordBinaryFileReader",
    "nordif": "file_reader",
    "emsoft_ebsd": "file_reader",
    **_H5EBSD_READERS,
}


def plugins() -> list[dict[str, Any]]:
    """kikuchipy's plugin table (name, file_extensions, footprints ...), as ``kikuchipy.load`` uses it."""
    from kikuchipy.io._io import PLUGINS

    return list(PLUGINS)


def plugin_from_footprints(path: str, candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The plugin among ``candidates`` (HDF5 ones) whose footprint groups the file has."""
    from kikuchipy.io._io import _plugin_from_footprints

    return _plugin_from_footprints(path, plugins=candidates)


def plugin_reader(name: str):
    """The reader (class or ``file_reader`` function) of kikuchipy's plugin ``name``."""
    module = importlib.import_module(f"kikuchipy.io.plugins.{name}._api")
    return getattr(module, _READERS[name])


def h5ebsd_writer():
    """kikuchipy's h5ebsd ``file_writer`` (what ``EBSD.save`` calls for ``.h5``)."""
    from kikuchipy.io.plugins.kikuchipy_h5ebsd import file_writer

    return file_writer


def direction_cosines(detector):
    """Direction cosines (sy * sx, 3) of every detector pixel for ``detector`` (one geometry)."""
    from kikuchipy.signals.util._master_pattern import _get_direction_cosines_from_detector

    return _get_direction_cosines_from_detector(detector)


def detector_to_sample_matrix(detector) -> Any:
    """The (3, 3) matrix that turns detector-frame vectors into the sample frame, as kikuchipy's
    direction cosines use it (``~detector.sample_to_detector``), without orix's quaternion
    round trip (the transpose of kikuchipy's sample-to-detector matrix)."""
    import numpy as np

    try:
        from kikuchipy.detectors._ebsd_detector import _sample_to_detector_matrix
    except ImportError:  # a kikuchipy without it: through orix
        return np.asarray((~detector.sample_to_detector).to_matrix(), np.float64).reshape(3, 3)
    angles = np.deg2rad([detector.sample_tilt, detector.tilt, detector.azimuthal, detector.twist])
    return np.ascontiguousarray(_sample_to_detector_matrix(*(float(a) for a in angles)).T)


def project_with_varying_pc(**kwargs):
    """kikuchipy's numba projection with one set of direction cosines per pattern."""
    from kikuchipy.signals.util._master_pattern import _project_patterns_from_master_pattern_with_varying_pc

    return _project_patterns_from_master_pattern_with_varying_pc(**kwargs)


def master_arrays(signal, energy):
    """The (upper, lower) Lambert arrays of an ``EBSDMasterPattern`` at ``energy`` (keV)."""
    return signal._get_master_pattern_arrays_from_energy(energy)
