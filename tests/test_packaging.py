"""What ships: the example configs inside the package (valid, and named by `kdeconv --help`), and
no module that switches matplotlib's backend."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"adapt": "adapt.AdaptConfig", "evaluate": "evaluate.EvaluateConfig",
          "generate": "generate.GenerateConfig", "ingest": "ingest.IngestConfig",
          "separate": "separate.SeparateConfig", "simulate_map": "simulate_map.SimulateMapConfig",
          "train": "train.TrainConfig"}


def test_help_names_the_example_configs_folder(cli):
    result = cli("--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    folder = Path(re.search(r"Example configs \(one per command\): (\S+)", text).group(1))
    assert folder == ROOT / "kdeconv" / "configs" and folder.is_dir()
    names = {p.stem for p in folder.glob("*.yaml")}
    assert {"ingest", "generate_debug", "train", "adapt", "separate", "evaluate", "simulate_map"} <= names


def test_package_data_ships_them():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["kdeconv"]
    shipped = {p for pattern in data for p in (ROOT / "kdeconv").glob(pattern)}
    assert set((ROOT / "kdeconv" / "configs").glob("*.yaml")) <= shipped


@pytest.mark.parametrize("path", sorted((ROOT / "kdeconv" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_is_valid(path, tmp_path, monkeypatch):
    import importlib

    from kdeconv.config import load_config

    stage = next(s for s in sorted(MODELS, key=len, reverse=True) if path.stem.startswith(s))
    module, name = MODELS[stage].split(".")
    model = getattr(importlib.import_module(f"kdeconv.config.{module}"), name)
    required = {"adapt": {"map": "m.zarr", "out": "runs/a"},
                "ingest": {"input": "in.up2", "output": "m.zarr"}}
    load_config(model, path, **required.get(stage, {}))


def test_no_module_switches_the_matplotlib_backend():
    """Files are drawn on figures of their own (kdeconv.figures); pyplot only where the user asks
    for a plot (Separation.plot), so a notebook keeps its backend."""
    switches, pyplot = [], []
    for path in sorted((ROOT / "kdeconv").rglob("*.py")):
        text = path.read_text()
        if "matplotlib.use(" in text:
            switches.append(path.name)
        if "matplotlib.pyplot" in text and path.name != "figures.py":
            pyplot.append(path.name)
    assert switches == [] and pyplot == ["separation.py"]
