"""Master-pattern sources and projection, checked against kikuchipy's own get_patterns."""

import numpy as np
import pytest

from kdeconv.config.detector import DetectorSpec
from kdeconv.errors import InputError
from kdeconv.preprocess import normalize
from kdeconv.simulate import (
    kinematic_master,
    load_master,
    nickel_master,
    random_quaternions,
    simulate_patterns,
    simulate_varied,
)

NI_CIF = """data_Ni
_cell_length_a 3.524
_cell_length_b 3.524
_cell_length_c 3.524
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
_symmetry_Int_Tables_number 225
loop_
_symmetry_equiv_pos_as_xyz
x,y,z
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Ni1 Ni 0 0 0 1
"""


@pytest.fixture(scope="module")
def ni():
    return nickel_master()


def _ncc(a, b):
    a = (a - a.mean()) / a.std()
    b = (b - b.mean()) / b.std()
    return float((a * b).mean())


def test_random_quaternions_keyed_unit_and_uniform():
    q1 = random_quaternions(np.random.default_rng([5, 1]), 20000)
    q2 = random_quaternions(np.random.default_rng([5, 1]), 20000)
    assert np.array_equal(q1, q2)
    assert np.allclose(np.linalg.norm(q1, axis=1), 1) and (q1[:, 0] >= 0).all()
    # Uniform on SO(3): every component has E[q_i^2] = 1/4.
    np.testing.assert_allclose((q1 ** 2).mean(axis=0), 0.25, atol=0.01)


def test_simulate_varied_matches_get_patterns_with_one_geometry(ni):
    from orix.quaternion import Rotation

    q = random_quaternions(np.random.default_rng(0), 6)
    pc, tilt, sample_tilt = (0.48, 0.52, 0.55), 3.0, 69.0
    det = DetectorSpec(shape=(40, 50), pc=pc, tilt=tilt, sample_tilt=sample_tilt).to_kikuchipy()
    ref = simulate_patterns(ni, Rotation(q), det)
    got = simulate_varied(ni, q, np.tile(pc, (6, 1)), np.full(6, tilt), np.full(6, sample_tilt), (40, 50))
    assert got.shape == ref.shape == (6, 40, 50) and got.dtype == np.float32
    np.testing.assert_allclose(normalize(got), normalize(ref), atol=1e-5)


def test_simulate_varied_per_pattern_pc_and_row_major_order(ni):
    from orix.quaternion import Rotation

    q = random_quaternions(np.random.default_rng(1), 6)
    pcs = np.column_stack([np.linspace(0.4, 0.6, 6), np.full(6, 0.5), np.linspace(0.45, 0.7, 6)])
    got = simulate_varied(ni, q, pcs, np.zeros(6), np.full(6, 70.0), (32, 32))
    for k in (0, 5):
        one = simulate_patterns(ni, Rotation(q[k]), DetectorSpec(shape=(32, 32), pc=pcs[k]).to_kikuchipy())
        np.testing.assert_allclose(normalize(got[k]), normalize(one[0]), atol=1e-5)
    # A 2D rotation map keeps row-major order (the Rotation.flatten() trap).
    grid = simulate_patterns(ni, Rotation(q.reshape(2, 3, 4)), DetectorSpec(shape=(32, 32)).to_kikuchipy())
    single = simulate_patterns(ni, Rotation(q[1]), DetectorSpec(shape=(32, 32)).to_kikuchipy())
    np.testing.assert_allclose(grid[1], single[0], atol=1e-6)


def test_kinematic_master_from_phase_and_cif_resemble_dynamical_ni(ni, tmp_path):
    spec = {"name": "ni", "space_group": 225, "lattice": [3.524, 3.524, 3.524, 90, 90, 90],
            "atoms": [{"element": "Ni", "xyz": [0, 0, 0]}]}
    kin = kinematic_master(phase=spec, hkl_max=2)
    assert kin.energy is None and kin.signal.projection == "lambert"
    cif = tmp_path / "ni.cif"
    cif.write_text(NI_CIF)
    kin_cif = load_master({"kind": "kinematic", "cif": str(cif), "hkl_max": 2})
    q = random_quaternions(np.random.default_rng(2), 3)
    args = (np.tile((0.5, 0.5, 0.5), (3, 1)), np.zeros(3), np.full(3, 70.0), (48, 48))
    dyn = simulate_varied(ni, q, *args)
    for master in (kin, kin_cif):
        pats = simulate_varied(master, q, *args)
        assert np.isfinite(pats).all()
        # Same bands in the same places: correlates with the dynamical pattern.
        assert min(_ncc(p, d) for p, d in zip(pats, dyn)) > 0.3
        # The bright zone axes were clipped at the 99.5th percentile: a plateau at the top.
        top = np.concatenate([master.upper.ravel(), master.lower.ravel()])
        assert (top == top.max()).mean() > 0.001
    shuffled = simulate_varied(kin, q[::-1], *args)
    assert _ncc(shuffled[0], dyn[0]) < 0.3


def test_bad_master_sources():
    with pytest.raises(InputError, match="not found"):
        load_master({"kind": "emsoft", "path": "/nonexistent/mp.h5"})
    with pytest.raises(InputError, match="CIF file not found"):
        load_master({"kind": "kinematic", "cif": "/nonexistent/x.cif"})
    with pytest.raises(InputError, match="bad phase"):
        kinematic_master(phase={"space_group": 225})
    with pytest.raises(InputError, match="unknown master"):
        load_master({"kind": "xray"})


def test_emsoft_master_file_matches_bundled_ni(ni):
    from pathlib import Path

    import kikuchipy

    path = (Path(kikuchipy.__file__).parent / "data" / "emsoft_ebsd_master_pattern"
            / "ni_mc_mp_20kv_uint8_gzip_opts9.h5")  # the local file behind the bundled Ni
    master = load_master({"kind": "emsoft", "path": str(path), "energy": 20})
    q = random_quaternions(np.random.default_rng(3), 2)
    args = (np.tile((0.5, 0.5, 0.5), (2, 1)), np.zeros(2), np.full(2, 70.0), (32, 32))
    np.testing.assert_allclose(normalize(simulate_varied(master, q, *args)),
                               normalize(simulate_varied(ni, q, *args)), atol=1e-5)


def test_direction_cosines_of_many_detectors_equal_kikuchipys():
    from kdeconv._kikuchipy import direction_cosines
    from kdeconv.simulate.project import direction_cosines_of

    rng = np.random.default_rng(4)
    detectors = [DetectorSpec(shape=(23, 31), pc=tuple(rng.uniform([0.35, 0.15, 0.4], [0.65, 0.75, 0.9])),
                              tilt=float(rng.uniform(-10, 10)), sample_tilt=float(rng.uniform(60, 75)),
                              azimuthal=float(rng.uniform(-2, 2)), twist=float(rng.uniform(-1, 1))
                              ).to_kikuchipy() for _ in range(5)]
    got = direction_cosines_of(detectors)
    assert got.shape == (5, 23 * 31, 3)
    for k, detector in enumerate(detectors):
        np.testing.assert_allclose(got[k], direction_cosines(detector), rtol=0, atol=1e-12)
