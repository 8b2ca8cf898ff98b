"""Checkpoints (one torch file, written atomically) and the ``Separator`` that runs a model.

A checkpoint is a plain dict readable with ``torch.load(weights_only=True)``:
``format``, ``format_version``, ``kdeconv_version``, ``model_config``, ``normalization``,
``state_dict``, and optionally ``train_config``, ``metrics``, ``data`` (what it was trained on),
``training_state`` (step, optimiser, scheduler, RNG: what ``--resume`` needs) and ``claim_rule``
(``claim_weight``, ``claim_min_cm``: when ``evaluate`` counts the minority output as a second
grain; written at install, where the model was checked with it).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from kdeconv.config.claim import ClaimRule
from kdeconv.errors import InputError
from kdeconv.files import atomic_file
from kdeconv.model.device import resolve_device
from kdeconv.model.inputs import DEFAULT_NORMALIZATION, check_normalization, pattern_mask, prepare_inputs
from kdeconv.model.precision import autocast, precision_name, resolve_precision
from kdeconv.model.residual_pass import residual_pass as residual_pass_kernel
from kdeconv.model.unet import DualDecoderUNet, UNetConfig
from kdeconv.serialize import jsonable

__all__ = ["FORMAT", "FORMAT_VERSION", "DEFAULT_CHECKPOINT", "ADAPT_BASE_CHECKPOINT",
           "BROAD_LOOKS_CHECKPOINT", "SMALL_PATTERNS_CHECKPOINT",
           "SMALL_PATTERNS_BELOW", "save_checkpoint", "read_checkpoint", "set_claim_rule",
           "update_checkpoint", "build_model", "resolve_device", "file_sha256", "Separator",
           "load_separator"]

FORMAT = "kdeconv-separator"
FORMAT_VERSION = 1
DEFAULT_CHECKPOINT = Path(__file__).parent / "weights" / "default.pt"
# What `adapt` starts from when no base is named: the multi-phase model (docs/model_card.md). The
# install gate keeps it from being the default, because its weight head reads faint minorities
# differently per phase; adapt refits that head on the map's own pure patterns and derives the
# claim rule from them.
ADAPT_BASE_CHECKPOINT = Path(__file__).parent / "weights" / "adapt_base.pt"
# The model `separate` weighs against the default on each map (kdeconv.separate.model_choice): it
# also learnt band profiles of other simulators (kinematic masters), at a small cost on the
# dynamical library's maps, so the install gate keeps it from being the default.
BROAD_LOOKS_CHECKPOINT = Path(__file__).parent / "weights" / "broad_looks.pt"
# What `separate` runs instead of the default on small patterns (shorter side below
# SMALL_PATTERNS_BELOW px): it learnt them upsampled to the working size, as separate runs them.
SMALL_PATTERNS_CHECKPOINT = Path(__file__).parent / "weights" / "small_patterns.pt"
SMALL_PATTERNS_BELOW = 96


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_model(model_config: dict[str, Any] | UNetConfig) -> DualDecoderUNet:
    if not isinstance(model_config, UNetConfig):
        try:
            model_config = UNetConfig.model_validate(model_config)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InputError(f"incompatible model config: {where}: {first['msg']}") from None
    return DualDecoderUNet(model_config)


def save_checkpoint(path: str | Path, model: DualDecoderUNet, *,
                    normalization: dict[str, Any] | None = None,
                    train_config: Any = None, metrics: dict[str, Any] | None = None,
                    data: Any = None, training_state: dict[str, Any] | None = None) -> Path:
    """Write ``path`` atomically (temp file in the same folder, then rename)."""
    from kdeconv import __version__

    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kdeconv_version": __version__,
        "model_config": model.cfg.model_dump(mode="json"),
        "normalization": check_normalization(normalization or DEFAULT_NORMALIZATION),
        "state_dict": {k: v.detach().to("cpu") for k, v in model.state_dict().items()},
        "train_config": jsonable(train_config) if train_config is not None else None,
        "metrics": jsonable(metrics or {}),
        "data": jsonable(data) if data is not None else None,
    }
    if training_state is not None:
        payload["training_state"] = training_state
    return _write_atomic(path, payload)


def _write_atomic(path: Path, payload: dict[str, Any]) -> Path:
    with atomic_file(path) as fh:
        torch.save(payload, fh)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a checkpoint dict (on the CPU); every problem is one-line InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as err:
        raise InputError(f"cannot read checkpoint {path}: {err.strerror or type(err).__name__}") from None
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive
        raise InputError(f"{path} is not a kdeconv checkpoint (not a PyTorch file)")
    if not zipfile.is_zipfile(path):
        raise InputError(f"checkpoint {path} is truncated or damaged (its zip directory is missing)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # damaged members, foreign objects ...
        raise InputError(f"checkpoint {path} is damaged or not a kdeconv checkpoint "
                         f"({_first_words(err)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(f"{path} is not a kdeconv checkpoint (no '{FORMAT}' format tag)")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(f"checkpoint {path} has format version {version}; this kdeconv reads "
                         f"up to {FORMAT_VERSION} (upgrade kdeconv)")
    for key in ("model_config", "state_dict", "normalization"):
        if key not in ckpt:
            raise InputError(f"checkpoint {path} is incomplete: no '{key}'")
    _check_finite(ckpt["state_dict"], path)
    ckpt["normalization"] = check_normalization(ckpt["normalization"])
    if ckpt.get("claim_rule") is not None:
        ckpt["claim_rule"] = ClaimRule.checked(ckpt["claim_rule"], f"checkpoint {path}").as_dict()
    return ckpt


def _first_words(err: BaseException, limit: int = 120) -> str:
    """The first line of an error message, cut at a word boundary."""
    lines = str(err).strip().splitlines()
    text = " ".join(lines[0].split()) if lines else type(err).__name__
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def _check_finite(state_dict: Any, path: Path) -> None:
    """NaN or inf weights are what a diverged training run leaves: such a model invents output."""
    if not isinstance(state_dict, dict):
        raise InputError(f"checkpoint {path} is damaged: its state_dict is not a mapping")
    for name, value in state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            raise InputError(f"checkpoint {path} has NaN or inf weights (in {name}): it comes from a "
                             "diverged training run; use an earlier checkpoint")


def set_claim_rule(source: str | Path, target: str | Path, claim_weight: float,
                   claim_min_cm: float) -> Path:
    """Write ``source``'s checkpoint to ``target`` (atomically) with this claim rule; the weights
    and everything else are kept as they are."""
    return update_checkpoint(source, target, claim_rule={"claim_weight": claim_weight,
                                                         "claim_min_cm": claim_min_cm})


def update_checkpoint(source: str | Path, target: str | Path, *, fp16_weights: bool = False,
                      state_dict: dict[str, torch.Tensor] | None = None, **fields: Any) -> Path:
    """Write ``source``'s checkpoint to ``target`` (atomically) with metadata ``fields`` added or
    replaced (plain JSON-like values: ``claim_rule``, ``working_range``, provenance); the weights
    are kept as they are, or stored as fp16 with ``fp16_weights`` (half the size; they load into
    the fp32 model). ``source`` is never written unless it is ``target``.

    ``state_dict`` replaces the weights (same names and shapes, e.g. a refitted weight head);
    it is checked against the model config before anything is written.
    """
    ckpt = read_checkpoint(source)
    if state_dict is not None:
        ckpt["state_dict"] = dict(state_dict)
        _check_finite(ckpt["state_dict"], Path(target))
        model_from_checkpoint(ckpt, source)  # names and shapes must fit the model config
    if fp16_weights:
        ckpt["state_dict"] = {k: v.half() if v.dtype == torch.float32 else v
                              for k, v in ckpt["state_dict"].items()}
    if "claim_rule" in fields:
        fields["claim_rule"] = ClaimRule.checked(fields["claim_rule"]).as_dict()
    if fields.get("working_range") is not None:
        from kdeconv.preprocess.resample import WorkingRange

        WorkingRange(**fields["working_range"])  # a bad range is refused here, not at separate time
    ckpt.update({key: jsonable(value) for key, value in fields.items()})
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return _write_atomic(target, ckpt)


def model_from_checkpoint(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> DualDecoderUNet:
    model = build_model(ckpt["model_config"])
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (RuntimeError, KeyError, TypeError) as err:
        lines = str(err).strip().splitlines()
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)
        raise InputError(f"checkpoint {path} does not match its model config "
                         f"({_first_words(detail)})") from None
    return model


class Separator:
    """A loaded model ready to separate stacks of patterns on its device."""

    def __init__(self, model: DualDecoderUNet, normalization: dict[str, Any], *,
                 device: torch.device, sha256: str = "", meta: dict[str, Any] | None = None,
                 path: Path | None = None, precision: str = "fp32"):
        self.device = device
        # autocast dtype (None = fp32); bf16 gives the same median NCC as fp32 on the check set
        self.autocast_dtype = resolve_precision(precision, device)
        self.normalization = check_normalization(normalization)
        self.sha256 = sha256
        self.meta = meta or {}
        self.path = path
        self.model = model.to(device).eval()
        # channels_last roughly doubles CPU conv throughput (oneDNN's native layout).
        self.model = self.model.to(memory_format=torch.channels_last)

    def separate(self, patterns: np.ndarray, batch_size: int | None = None,
                 residual_pass: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(n, sy, sx)`` -> ``A, B`` float32 (n, sy, sx) in [0, 1] and weights (n, 2), wA >= wB.

        Patterns should be background-corrected already; the checkpoint's own normalisation
        (and mask handling) is applied here. ``residual_pass``: see ``forward_tensor``.
        """
        stack = np.asarray(patterns)
        if stack.ndim != 3:
            raise InputError(f"separate expects patterns of shape (n, sy, sx), got {stack.shape}")
        n, sy, sx = stack.shape
        a_out = np.empty((n, sy, sx), dtype=np.float32)
        b_out = np.empty((n, sy, sx), dtype=np.float32)
        w_out = np.empty((n, 2), dtype=np.float32)
        from kdeconv.separate.chunk import effective_batch_size

        step = effective_batch_size(batch_size, (sy, sx), self.device.type, self.precision)
        for start in range(0, n, step):
            stop = min(n, start + step)
            x, masked = prepare_inputs(stack[start:stop], self.normalization)
            a, b, w_a = self._forward(x, residual_pass)
            swap = w_a < 0.5
            a[swap], b[swap] = b[swap].copy(), a[swap].copy()
            w_a = np.where(swap, 1.0 - w_a, w_a)
            if masked.any():
                outside = ~pattern_mask((sy, sx))
                a[masked[:, None, None] & outside] = 0.0
                b[masked[:, None, None] & outside] = 0.0
            a_out[start:stop], b_out[start:stop] = a, b
            w_out[start:stop, 0] = w_a
            w_out[start:stop, 1] = 1.0 - w_a
        return a_out, b_out, w_out

    def _forward(self, x: np.ndarray, residual_pass: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tensor = torch.from_numpy(np.ascontiguousarray(x))
        if self.device.type == "cuda":  # page-locked batch: one async host->device copy
            tensor = tensor.pin_memory()
        a, b, w_a = self.forward_tensor(tensor.to(self.device, non_blocking=True), residual_pass)
        return a.cpu().numpy(), b.cpu().numpy(), w_a.cpu().numpy()

    def forward_tensor(self, x: torch.Tensor, residual_pass: float | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The network on normalised inputs already on its device: float32 ``(n, sy, sx)`` ->
        ``A, B`` float32 ``(n, sy, sx)`` and ``wA`` float32 ``(n,)``, all on the device (no
        mask; ``separate`` and the device pipeline add it).

        ``residual_pass``: the minority weight from which B is separated again from the residual
        of C after A (``kdeconv.model.residual_pass``; A dominant then); None: one pass."""
        a, b, w_a = self._network(x)
        if residual_pass is None:
            return a, b, w_a
        with torch.inference_mode():
            return residual_pass_kernel(self._dominant, x, a, b, w_a, residual_pass, self.normalization)

    def _run(self, method, x: torch.Tensor):
        """``method`` of the model on ``x`` (n, sy, sx) as one channel, at the autocast precision."""
        tensor = x[:, None].contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.device, self.autocast_dtype):
            return method(tensor)

    def _network(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, b, w_a = self._run(self.model, x)
        return a[:, 0].float(), b[:, 0].float(), w_a.float()

    def _dominant(self, x: torch.Tensor) -> torch.Tensor:
        dominant, _ = self._run(self.model.forward_dominant, x)
        return dominant[:, 0].float()

    def __repr__(self) -> str:
        return (f"Separator({self.path}, device={self.device}, precision={self.precision}, "
                f"sha256={self.sha256[:12]})")

    @property
    def claim_rule(self) -> dict[str, float] | None:
        """The checkpoint's claim rule (see module docstring), None when it has none."""
        return self.meta.get("claim_rule")

    @property
    def precision(self) -> str:
        return precision_name(self.autocast_dtype)


def load_separator(checkpoint: str | Path | None = None, device: str = "auto",
                   precision: str = "auto") -> Separator:
    """Load a checkpoint (None = the default model shipped in ``kdeconv/model/weights``).

    ``precision`` (kdeconv.model.precision): auto = bf16 where the device runs it natively.
    """
    path = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    if checkpoint is None and not path.is_file():
        raise InputError(f"the shipped default model is missing ({path}); reinstall kdeconv "
                         "or pass --checkpoint")
    dev = resolve_device(device)
    ckpt = read_checkpoint(path)
    model = model_from_checkpoint(ckpt, path)
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "training_state")}
    return Separator(model, ckpt["normalization"], device=dev, sha256=file_sha256(path),
                     meta=meta, path=path, precision=precision)
