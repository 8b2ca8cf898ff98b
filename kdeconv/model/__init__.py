"""The separation model: dual-decoder U-Net, checkpoints, and the ``Separator`` used by ``separate``.

``load_separator(None)`` loads the default model shipped in ``kdeconv/model/weights/default.pt``.
"""

from kdeconv.model.checkpoint import (DEFAULT_CHECKPOINT, Separator, build_model, file_sha256,
                                      load_separator, model_from_checkpoint, read_checkpoint,
                                      resolve_device, save_checkpoint)
from kdeconv.model.inputs import DEFAULT_NORMALIZATION, normalize_like, prepare_inputs
from kdeconv.model.unet import DualDecoderUNet, UNetConfig

__all__ = ["DEFAULT_CHECKPOINT", "DEFAULT_NORMALIZATION", "DualDecoderUNet", "Separator", "UNetConfig",
           "build_model", "file_sha256", "load_separator", "model_from_checkpoint", "normalize_like",
           "prepare_inputs", "read_checkpoint", "resolve_device", "save_checkpoint"]
