"""The separation model: dual-decoder U-Net, checkpoints, and the ``Separator`` used by ``separate``.

``load_separator(None)`` loads the default model shipped in ``kdeconv/model/weights/default.pt``.
"""

import os

# Before torch loads OpenMP: spinning worker threads collapse throughput when cores are shared
# (measured on 2 busy cores: 2.3 vs 17.9 training samples/s). Only a default; users may override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from kdeconv.model.checkpoint import (  # noqa: E402
    ADAPT_BASE_CHECKPOINT,
    BROAD_LOOKS_CHECKPOINT,
    DEFAULT_CHECKPOINT,
    SMALL_PATTERNS_BELOW,
    SMALL_PATTERNS_CHECKPOINT,
    Separator,
    build_model,
    file_sha256,
    load_separator,
    model_from_checkpoint,
    read_checkpoint,
    resolve_device,
    save_checkpoint,
    set_claim_rule,
)
from kdeconv.model.inputs import DEFAULT_NORMALIZATION, normalize_like, prepare_inputs  # noqa: E402
from kdeconv.model.unet import DualDecoderUNet, UNetConfig  # noqa: E402

__all__ = ["ADAPT_BASE_CHECKPOINT", "BROAD_LOOKS_CHECKPOINT", "DEFAULT_CHECKPOINT", "DEFAULT_NORMALIZATION",
           "DualDecoderUNet", "SMALL_PATTERNS_BELOW", "SMALL_PATTERNS_CHECKPOINT",
           "Separator", "UNetConfig", "build_model", "file_sha256", "load_separator",
           "model_from_checkpoint", "normalize_like", "prepare_inputs", "read_checkpoint", "resolve_device",
           "save_checkpoint", "set_claim_rule"]
