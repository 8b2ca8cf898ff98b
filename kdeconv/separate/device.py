"""Per-chunk kernel of the device pipeline: a whole chunk separated on the model's device.

The raw chunk goes to the device once; blank frames, mask detection, background removal,
resampling, the model's input normalisation, the network, the dominance ordering, resampling back
and the conversion to the output dtype all run there in torch (``kdeconv.preprocess.torch_kernels``),
and only A, B, weights and the blank flags come back. The numbers are those of
``chunk.separate_patterns`` up to float rounding (same steps, same order); on the CPU the same
code runs, which is how it is tested.

Nothing here waits for the device: checks (NaN input, NaN model output) are returned as flags
that the caller reads once the results are on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kdeconv.preprocess import torch_kernels as tk
from kdeconv.preprocess.mask import screen_box, screen_shape, to_screen, windowed
from kdeconv.preprocess.resample import resample

__all__ = ["DeviceKernel", "DeviceResult", "to_transfer", "from_transfer", "device_batch_size",
           "supports_device_kernel"]


def supports_device_kernel(separator) -> bool:
    """The device pipeline needs a torch separator (``kdeconv.model.Separator``)."""
    return callable(getattr(separator, "forward_tensor", None)) and hasattr(separator, "device")


# ---------------------------------------------------------------------- host <-> device dtypes

def to_transfer(block: np.ndarray) -> torch.Tensor:
    """A host tensor holding ``block``'s bytes in a dtype every torch device copies (uint16 and
    uint32 travel as their signed views and are widened on the device)."""
    block = np.ascontiguousarray(block)
    if block.dtype == np.uint16:
        return torch.from_numpy(block.view(np.int16))
    if block.dtype == np.uint32:
        return torch.from_numpy(block.view(np.int32))
    if tk.torch_dtype(block.dtype) is None:
        return torch.from_numpy(block.astype(np.float64))
    return torch.from_numpy(block)


def _widen(x: torch.Tensor, dtype: np.dtype) -> torch.Tensor:
    """The device tensor of ``to_transfer`` as exact values: float64 where float32 is not exact."""
    if dtype == np.uint16:
        return (x.to(torch.int32) & 0xFFFF).float()
    if dtype == np.uint32:
        return (x.to(torch.int64) & 0xFFFFFFFF).double()
    if dtype.kind == "f" and dtype.itemsize > 4 or dtype.kind in "iu" and dtype.itemsize > 2:
        return x.double()
    return x.float()


_CARRIERS: dict[tuple[str, str], torch.dtype | None] = {}


def _carrier(dtype: np.dtype, device: torch.device) -> torch.dtype | None:
    """The dtype the device writes integer outputs in: the output dtype itself, or (where the
    device cannot cast floats to it) its signed view, reinterpreted on the host."""
    key = (str(device), dtype.str)
    if key not in _CARRIERS:
        want = tk.torch_dtype(dtype)
        carrier = want
        if want is not None and dtype.kind == "u" and dtype.itemsize > 1:
            try:
                probe = torch.tensor([0.0, 1.0, float(np.iinfo(dtype).max)], dtype=torch.float64,
                                     device=device).to(want)
                ok = probe.to(torch.int64).cpu().tolist() == [0, 1, int(np.iinfo(dtype).max)]
            except (RuntimeError, TypeError, NotImplementedError):
                ok = False
            carrier = want if ok else {2: torch.int16, 4: torch.int32}[dtype.itemsize]
        _CARRIERS[key] = carrier
    return _CARRIERS[key]


def from_transfer(tensor: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """Host tensor of results -> numpy in ``dtype`` (a signed carrier is viewed, not converted)."""
    out = tensor.numpy()
    if out.dtype != dtype and out.dtype.itemsize == dtype.itemsize and dtype.kind == "u":
        return out.view(dtype)
    return out if out.dtype == dtype else out.astype(dtype)


# ---------------------------------------------------------------------- batch size

_BATCHES: dict[tuple, int] = {}
# Share of the card's memory the model's activations may take (the chunk, its preprocessing and
# the caching allocator's slack take the rest).
DEVICE_MEMORY_SHARE = 0.35
MAX_DEVICE_BATCH = 2048


def device_batch_size(separator, work_shape: tuple[int, int], requested: int | None) -> int:
    """Patterns per model call. On a GPU: as many as fit ``DEVICE_MEMORY_SHARE`` of its memory,
    measured with one probe batch (a multiple of 64, at least ``requested``, and less when other
    processes hold the card's memory); elsewhere ``requested`` (None: the CPU's own) as the CPU
    path bounds it. Measured once per process, card and shape."""
    from kdeconv.separate.chunk import effective_batch_size

    device = separator.device
    if device.type != "cuda":
        return effective_batch_size(requested, work_shape, device.type, separator.precision)
    key = (str(device), tuple(work_shape), getattr(separator, "sha256", ""), str(separator.autocast_dtype))
    if key not in _BATCHES:
        probe = 32
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        # with the residual pass on every pattern: the most a batch can hold at once
        separator.forward_tensor(torch.zeros((probe,) + tuple(work_shape), device=device), 0.0)
        torch.cuda.synchronize(device)
        per_pattern = max(1, (torch.cuda.max_memory_allocated(device) - before) / probe)
        # The preprocessing of a batch holds ~16 float32 copies of it (sort, matrices, outputs).
        per_pattern += 16 * 4 * int(np.prod(work_shape))
        free, total = torch.cuda.mem_get_info(device)
        # Other processes on the card (several workers on one GPU) leave less than its share.
        budget = min(DEVICE_MEMORY_SHARE * total, 0.6 * (free + torch.cuda.memory_reserved(device)))
        fit = int(budget / per_pattern) // 64 * 64
        _BATCHES[key] = max(int(requested or 64), min(MAX_DEVICE_BATCH, max(64, fit)))
    return _BATCHES[key]


# ---------------------------------------------------------------------- the kernel

@dataclass
class DeviceResult:
    """One chunk's results, on the device until ``to_host``."""

    a: torch.Tensor          # (n, sy, sx) in the output dtype (or its carrier)
    b: torch.Tensor
    weights: torch.Tensor    # (n, 2) float32, NaN for blank frames
    blank: torch.Tensor      # (n,) bool
    bad_input: torch.Tensor  # () bool: NaN or inf in the raw patterns
    bad_model: torch.Tensor  # () bool: NaN or inf from the model on a pattern that is not blank

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.a, self.b, self.weights, self.blank, self.bad_input, self.bad_model


class DeviceKernel:
    """``kernel(raw)`` separates one chunk ``(n, sy, sx)`` (from ``to_transfer``, on the device).

    ``static_bg`` is the map's static background at the size the recipe's window leaves (the
    map's pattern size, or a round screen's square; as the CPU path gets it); it is resampled to
    ``work_shape`` by the same numpy code and kept on the device.
    ``residual_pass``: as ``kdeconv.model.Separator.forward_tensor``.
    """

    def __init__(self, separator, *, sig_shape: tuple[int, int], work_shape: tuple[int, int],
                 background: dict[str, Any], static_bg: np.ndarray | None, dtype,
                 out_dtype=None, batch_size: int = 64, residual_pass: float | None = None):
        self.separator = separator
        self.residual_pass = residual_pass
        self.device = separator.device
        self.sig_shape = tuple(int(v) for v in sig_shape)
        self.background = dict(background)
        self.screen = screen_box(self.background)
        self.seen_shape = screen_shape(self.sig_shape, self.background)
        self.work_shape = tuple(int(v) for v in (work_shape or self.seen_shape))
        self.dtype = np.dtype(dtype)
        self.out_dtype = np.dtype(out_dtype or dtype)
        self.batch_size = int(batch_size)
        self.normalization = separator.normalization
        self.resampled = self.work_shape != self.seen_shape
        self.native_masking = min(self.seen_shape) >= 3
        self.carrier = _carrier(self.out_dtype, self.device) if self.out_dtype.kind in "ui" else None
        self.static_bg = None
        if static_bg is not None:
            work_bg = np.asarray(resample(np.asarray(static_bg, np.float32), self.work_shape), np.float32)
            self.static_bg = torch.from_numpy(np.array(work_bg)).to(self.device)

    def __call__(self, raw: torch.Tensor) -> DeviceResult:
        with torch.inference_mode():
            return self._run(raw)

    def _run(self, raw: torch.Tensor) -> DeviceResult:
        n = raw.shape[0]
        exact = _widen(raw, self.dtype)
        blank = tk.blank_frames(exact)
        if windowed(self.background) and min(self.sig_shape) >= 3:  # a round screen's surround
            exact = to_screen(exact, self.background)
            exact = exact * tk.mask_tensor(self.seen_shape, self.device).to(exact.dtype)
        if self.dtype.kind == "f":
            bad_input = ~torch.isfinite(exact).all()
        else:
            bad_input = torch.zeros((), dtype=torch.bool, device=self.device)
        if self.native_masking:
            native = tk.detect_masked(exact, unsigned=self.dtype.kind == "u")
        else:
            native = torch.zeros(n, dtype=torch.bool, device=self.device)
        stack = exact.float()
        out_torch = self.carrier or tk.torch_dtype(self.out_dtype) or torch.float64
        allocate = torch.zeros if self.screen else torch.empty  # around a screen's square: zero
        a_out = allocate((n,) + self.sig_shape, dtype=out_torch, device=self.device)
        b_out = allocate((n,) + self.sig_shape, dtype=out_torch, device=self.device)
        a_put, b_put = to_screen(a_out, self.background), to_screen(b_out, self.background)
        w_out = torch.empty((n, 2), dtype=torch.float32, device=self.device)
        bad_rows = torch.zeros(n, dtype=torch.bool, device=self.device)
        native_mask = tk.mask_tensor(self.seen_shape, self.device) if self.native_masking else None
        for first in range(0, n, self.batch_size):
            rows = slice(first, min(n, first + self.batch_size))
            masked = native[rows]
            pre = tk.preprocess_patterns(stack[rows], self.background, self.static_bg,
                                         self.work_shape, masked)
            a, b, w = self._separate(pre)
            keep = ~blank[rows]
            bad_rows[rows] = keep & ~(torch.isfinite(a).flatten(1).all(1)
                                      & torch.isfinite(b).flatten(1).all(1) & torch.isfinite(w).all(1))
            # Keep A dominant even if a separator does not promise it (as chunk.separate_patterns).
            swap = w[:, 0] < w[:, 1]
            a, b = torch.where(swap[:, None, None], b, a), torch.where(swap[:, None, None], a, b)
            w = torch.where(swap[:, None], w.flip(1), w)
            if self.resampled:
                a, b = tk.resample(a, self.seen_shape), tk.resample(b, self.seen_shape)
                if native_mask is not None:
                    a = torch.where(masked[:, None, None], a * native_mask, a)
                    b = torch.where(masked[:, None, None], b * native_mask, b)
            # Blank frames stay empty: A = B = 0, weights NaN (decided here, in float, so the
            # output dtype sees no arithmetic: some devices only copy uint16).
            a = torch.where(keep[:, None, None], a, torch.zeros_like(a))
            b = torch.where(keep[:, None, None], b, torch.zeros_like(b))
            a_put[rows] = tk.to_dtype(a, self.out_dtype, self.carrier)
            b_put[rows] = tk.to_dtype(b, self.out_dtype, self.carrier)
            w_out[rows] = torch.where(keep[:, None], w, torch.full_like(w, float("nan")))
        return DeviceResult(a_out, b_out, w_out, blank, bad_input, bad_rows.any())

    def _separate(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``Separator.separate`` on the device: normalise, network, dominance, mask; weights (n, 2)."""
        x, masked = tk.prepare_inputs(pre, self.normalization)
        a, b, w_a = self.separator.forward_tensor(x, self.residual_pass)
        swap = w_a < 0.5
        a, b = torch.where(swap[:, None, None], b, a), torch.where(swap[:, None, None], a, b)
        w_a = torch.where(swap, 1.0 - w_a, w_a)
        outside = ~tk.mask_tensor(tuple(pre.shape[-2:]), self.device)
        zero_out = masked[:, None, None] & outside[None]
        a = torch.where(zero_out, torch.zeros_like(a), a)
        b = torch.where(zero_out, torch.zeros_like(b), b)
        return a, b, torch.stack([w_a, 1.0 - w_a], dim=1)
