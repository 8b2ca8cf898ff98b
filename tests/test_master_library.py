"""The shipped dynamical master library: every phase loads into kikuchipy and projects; Ni agrees
with kikuchipy's bundled EMsoft Ni; the hexagonal frame agrees with kikuchipy's kinematic one."""

import numpy as np
import pytest

from kdeconv.config.detector import DetectorSpec
from kdeconv.preprocess.background import remove_dynamic_background
from kdeconv.simulate import (
    kinematic_master,
    library_master,
    library_path,
    library_phases,
    phase_info,
    simulate_patterns,
)

PHASES = library_phases()


def _ncc(a, b):
    a = a - a.mean(axis=(1, 2), keepdims=True)
    b = b - b.mean(axis=(1, 2), keepdims=True)
    return (a * b).sum(axis=(1, 2)) / np.sqrt((a * a).sum(axis=(1, 2)) * (b * b).sum(axis=(1, 2)))


def test_the_library_covers_the_phases_users_map():
    wanted = {"ni", "al", "cu", "fe_gamma", "fe_alpha", "mo", "ti_beta", "ti_alpha", "mg", "zr", "si"}
    assert wanted <= set(PHASES)
    sizes = [library_path(name).stat().st_size for name in PHASES]
    assert max(sizes) < 20e6 and sum(sizes) < 40e6
    for name in PHASES:
        info = phase_info(name)
        assert info["settings"]["bethe"] == {"strong": 4.0, "weak": 8.0, "cutoff": 50.0}
        assert info["settings"]["dmin_nm"] == 0.05 and info["de_ebsd_version"]
        assert info["settings"]["energies_kev"] == [10.0, 15.0, 20.0, 25.0, 30.0]


@pytest.mark.parametrize("name", PHASES)
def test_each_phase_loads_into_kikuchipy_and_projects(name):
    import kikuchipy as kp

    signal = kp.load(library_path(name), projection="lambert", hemisphere="both")
    assert signal.phase.name == name
    assert signal.phase.space_group.number == phase_info(name)["space_group"]
    master = library_master(name, energy=22)  # the nearest library energy: 20 kV
    assert master.energy == 20.0
    from orix.quaternion import Rotation

    detector = DetectorSpec(shape=(40, 50), pc=(0.5, 0.4, 0.6)).to_kikuchipy()
    patterns = simulate_patterns(master, Rotation.random(3), detector)
    assert patterns.shape == (3, 40, 50) and np.isfinite(patterns).all()
    assert (patterns.std(axis=(1, 2)) > 0).all()


def test_nickel_matches_kikuchipys_bundled_emsoft_master():
    import kikuchipy as kp
    from orix.quaternion import Rotation

    from kdeconv.simulate import nickel_master

    ours = kp.load(library_path("ni"), projection="lambert", hemisphere="both", energy=20)
    theirs = kp.data.nickel_ebsd_master_pattern_small(projection="lambert", hemisphere="both", energy=20)
    # the bundled file is npx 200, the library npx 150: compare on detectors
    rot = Rotation.random(20)
    det = DetectorSpec(shape=(80, 80), pc=(0.5, 0.5, 0.6)).to_kikuchipy()
    a = remove_dynamic_background(simulate_patterns(library_master("ni", 20), rot, det))
    b = remove_dynamic_background(simulate_patterns(nickel_master(20), rot, det))
    assert np.median(_ncc(a, b)) > 0.95  # measured 0.966 (de-ebsd's own Monte Carlo depths)
    assert ours.data.shape[-1] == 301 and theirs.data.shape[-1] == 401


def _in_angstrom(phase):
    """kikuchipy reads EMsoft lattices in nm; diffsims' kinematic simulator wants Angstrom."""
    from diffpy.structure import Atom, Lattice, Structure
    from orix.crystal_map import Phase

    from kdeconv.simulate.masters import restore_fractional

    lat = phase.structure.lattice
    xyz = [a.xyz.copy() for a in phase.structure]
    structure = Structure(atoms=[Atom(a.element, a.xyz, occupancy=a.occupancy) for a in phase.structure],
                          lattice=Lattice(lat.a * 10, lat.b * 10, lat.c * 10, lat.alpha, lat.beta, lat.gamma))
    return restore_fractional(Phase(name=phase.name, space_group=phase.space_group.number,
                                    structure=structure), xyz)


def test_the_hexagonal_frame_agrees_with_kikuchipys_kinematic_simulation():
    from orix.quaternion import Rotation

    dynamical = library_master("ti_alpha", 20)
    kinematic = kinematic_master(phase=_in_angstrom(dynamical.phase), hkl_max=4)
    rot = Rotation.random(20)
    det = DetectorSpec(shape=(80, 80), pc=(0.5, 0.5, 0.6)).to_kikuchipy()
    dyn = remove_dynamic_background(simulate_patterns(dynamical, rot, det))
    same = _ncc(dyn, remove_dynamic_background(simulate_patterns(kinematic, rot, det)))
    turned = Rotation.from_axes_angles([0, 0, 1], np.deg2rad(30))  # a and a* swapped
    other = _ncc(dyn, remove_dynamic_background(simulate_patterns(kinematic, rot * turned, det)))
    assert np.median(same) > 0.35 and np.median(other) < 0.1  # measured 0.48 and 0.00


def test_hexagonal_atoms_keep_their_fractional_positions():
    master = library_master("ti_alpha", 20)
    np.testing.assert_allclose(master.phase.structure[0].xyz, [1 / 3, 2 / 3, 0.25], atol=1e-9)
    from kdeconv.simulate.masters import _phase_from_spec

    phase = _phase_from_spec({"name": "mg", "space_group": 194,
                              "lattice": [3.2094, 3.2094, 5.2107, 90, 90, 120],
                              "atoms": [{"element": "Mg", "xyz": [1 / 3, 2 / 3, 0.25]}]})
    np.testing.assert_allclose(phase.structure[0].xyz, [1 / 3, 2 / 3, 0.25], atol=1e-9)
