"""Configs load without torch; the precision and device choices are written once."""

import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

from kdeconv.config import Device, Precision

REPO = Path(__file__).resolve().parents[2]


def test_configs_do_not_import_torch():
    code = ("import sys, kdeconv.config.train, kdeconv.config.separate, kdeconv.config.model; "
            "from kdeconv.config.train import TrainConfig; TrainConfig(init_checkpoint='default'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_one_literal_for_precision_and_device():
    from kdeconv.cli.train import train
    from kdeconv.config.separate import SeparateConfig
    from kdeconv.config.train import TrainConfig
    from kdeconv.model import UNetConfig
    from kdeconv.model.precision import PRECISIONS
    from kdeconv.model.unet import UNetConfig as unet_config

    assert get_args(Precision) == PRECISIONS and get_args(Device) == ("auto", "cpu", "cuda")
    for model in (TrainConfig, SeparateConfig):
        assert model.model_fields["precision"].annotation is Precision
        assert model.model_fields["device"].annotation is Device
    choices = {p.name: tuple(p.type.choices) for p in train.params if p.name in ("precision", "device")}
    assert choices == {"precision": PRECISIONS, "device": get_args(Device)}
    assert UNetConfig is unet_config  # kdeconv.model.UNetConfig still importable


def test_example_configs_are_valid():
    from kdeconv.config import load_config
    from kdeconv.config.train import TrainConfig
    from kdeconv.train.run_config import resolve_init

    paths = sorted(REPO.glob("configs/train*.yaml")) + sorted(REPO.glob("kdeconv/configs/train*.yaml"))
    assert len(paths) >= 4
    for path in paths:
        cfg = load_config(TrainConfig, path)
        if cfg.init_checkpoint:
            # its sections agree with the checkpoint's; a config pinned to an earlier default
            # (train_library.yaml: ni-v4, which its workflow restores from git) is checked against
            # today's, which has the same architecture
            resolve_init(cfg.model_copy(update={"init_checkpoint_sha256": None}))
    assert load_config(TrainConfig, REPO / "kdeconv/configs/train.yaml") == TrainConfig()
