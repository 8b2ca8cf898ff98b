"""Training: streamed pairs data (data.py), the permutation-invariant loss (loss.py), validation
kernels (validation.py), the schedule, the metrics log, which config a run uses (run_config.py)
and the trainer with the stage entry point ``run`` (driver.py)."""

from kdeconv._exports import make_callable
from kdeconv.train.driver import Trainer, TrainingDiverged, TrainResult, run

__all__ = ["run", "TrainResult", "Trainer", "TrainingDiverged"]

make_callable(__name__, "run")  # kdeconv.train(config, data=..., out=...)
