"""The shipped model's generate recipes (configs/generate_*.yaml): valid configs, the held-out
phase held out, kinematic looks built from the library's own crystal structures."""

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "configs").glob("generate_*.yaml"))
HELD_OUT = "zr"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_is_a_valid_generate_config_without_the_held_out_phase(path):
    from kdeconv.config.generate import GenerateConfig
    from kdeconv.generate.driver import phase_names

    cfg = GenerateConfig.model_validate(yaml.safe_load(path.read_text()))
    if cfg.source.kind == "simulate":
        assert HELD_OUT not in phase_names(cfg)


def test_kinematic_recipes_use_the_library_lattices_and_atoms():
    library = json.loads((ROOT / "kdeconv/simulate/library/library.json").read_text())["phases"]
    kinematic = [p for p in RECIPES if "kinematic" in p.name]
    assert kinematic
    for path in kinematic:
        phases = yaml.safe_load(path.read_text())["source"]["phases"]
        assert len(phases) >= 10
        for entry in phases:
            phase = entry["master"]["phase"]
            ref = library[phase["name"]]
            lattice_nm = [v / 10 for v in phase["lattice"][:3]] + phase["lattice"][3:]
            assert lattice_nm == pytest.approx(ref["lattice_nm_deg"], abs=1e-5), phase["name"]
            assert phase["space_group"] == ref["space_group"]
            assert [a["element"] for a in phase["atoms"]] == [a["element"] for a in ref["atoms"]]
            for got, want in zip(phase["atoms"], ref["atoms"]):
                assert got["xyz"] == pytest.approx(want["xyz"], abs=1e-5)


def test_small_detector_recipe_resamples_to_the_working_size():
    cfg = yaml.safe_load((ROOT / "configs/generate_library_60to120.yaml").read_text())
    assert cfg["source"]["shape"] == [60, 60]
    assert cfg["preprocess"]["resample_to"] == [120, 120]
