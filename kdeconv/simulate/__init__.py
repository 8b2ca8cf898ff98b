"""Master patterns and the projection of pure patterns with known orientations.

- ``masters``: master-pattern sources (kikuchipy's bundled Ni, an EMsoft file, a kinematic
  pattern from a phase or CIF, and the shipped dynamical library), one loader: ``load_master``;
- ``library``: the shipped dynamical library (phase table, files, provenance);
- ``project``: projection onto detectors (one geometry, or one per pattern).
"""

from kdeconv.simulate.library import library_path, library_phases, phase_info
from kdeconv.simulate.masters import (
    Master,
    emsoft_master,
    kinematic_master,
    library_master,
    load_master,
    nickel_master,
)
from kdeconv.simulate.project import random_quaternions, simulate_patterns, simulate_varied

__all__ = ["Master", "load_master", "nickel_master", "emsoft_master", "kinematic_master",
           "library_master", "library_path", "library_phases", "phase_info", "simulate_patterns",
           "simulate_varied", "random_quaternions"]
