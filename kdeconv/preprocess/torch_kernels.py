"""The preprocessing of ``separate`` in torch, on any device: the same numbers as the numpy kernels.

Each function mirrors one numpy kernel step by step (same float32 operations, same order), so on
the CPU the results agree to float rounding and on a GPU the patterns never leave the device:

- ``rescale_per_pattern``        <- ``preprocess.background.rescale_per_pattern``
- ``remove_static_background``   <- ``preprocess.background.remove_static_background``
- ``dynamic_background``         <- ``preprocess.background.dynamic_background``: kikuchipy's
  padded FFT filter is a Gaussian blur with edge-replicating borders, so it is written as two
  small matrix products ``By @ X @ Bx.T`` (exact up to rounding, and fast on any device);
- ``resample``                   <- ``preprocess.resample.resample`` (the same matrices);
- ``detect_masked``, ``blank_frames``, the circular mask;
- ``preprocess_patterns``        <- ``separate.chunk.preprocess_patterns``;
- ``prepare_inputs``             <- ``model.inputs.prepare_inputs`` (percentile or min-max
  normalisation, statistics inside the mask for masked patterns), without a host round trip;
- ``to_dtype``                   <- ``separate.chunk.to_dtype``.

Nothing here synchronises with the host (no data-dependent shapes): rows are selected with
``torch.where``, so a GPU queue is never drained by the preprocessing. Autocast must be off here
(the callers run the model alone under autocast).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from kdeconv.preprocess.background import background_steps, fill_steps
from kdeconv.preprocess.mask import circular_mask
from kdeconv.preprocess.resample import resample_matrix

__all__ = ["blur_matrix", "on_device", "mask_tensor", "rescale_per_pattern", "fill_outside_mask",
           "remove_static_background", "dynamic_background", "remove_dynamic_background", "resample",
           "blank_frames",
           "detect_masked", "preprocess_patterns", "prepare_inputs", "to_dtype", "torch_dtype"]

_OPERATIONS = ("subtract", "divide")


@lru_cache(maxsize=32)
def blur_matrix(n: int, std: float, truncate: float = 4.0) -> np.ndarray:
    """``(n, n)`` float32: kikuchipy's Gaussian window along one axis of ``n`` pixels, borders
    replicated (what Barnes' padding of the FFT filter amounts to). The 2D blur is
    ``B_y @ X @ B_x.T``."""
    side = int(truncate * std)
    if side < 1:
        raise ValueError(f"std*truncate must be >= 1, got std={std}, truncate={truncate}")
    taps = np.arange(side) - (side - 1) / 2.0
    line = np.exp(-0.5 * (taps / std) ** 2)
    line /= line.sum()
    # Tap k of output i reads input i + k - offset (the padded FFT's alignment), clipped to the edges.
    offset = side - (side - 1) // 2 - 1
    out = np.zeros((n, n), np.float64)
    rows = np.arange(n)[:, None]
    cols = np.clip(rows + np.arange(side)[None, :] - offset, 0, n - 1)
    np.add.at(out, (np.broadcast_to(rows, cols.shape), cols), np.broadcast_to(line, cols.shape))
    matrix = out.astype(np.float32)
    matrix.setflags(write=False)
    return matrix


_DEVICE_CACHE: dict[tuple, torch.Tensor] = {}


def on_device(key: tuple, make, device: torch.device) -> torch.Tensor:
    """A constant tensor (matrix, mask) made once per ``key`` and device."""
    full = (str(device),) + key
    tensor = _DEVICE_CACHE.get(full)
    if tensor is None:
        if len(_DEVICE_CACHE) > 256:
            _DEVICE_CACHE.clear()
        tensor = torch.from_numpy(np.array(make())).to(device)
        _DEVICE_CACHE[full] = tensor
    return tensor


def mask_tensor(shape: tuple[int, int], device) -> torch.Tensor:
    """The circular mask of ``shape`` (``preprocess.mask.circular_mask``), bool, on ``device``."""
    return on_device(("mask", tuple(shape)), lambda: circular_mask(tuple(shape)), device)


def _outside(shape: tuple[int, int], device) -> torch.Tensor:
    """Flat indices of the pixels outside the circular mask (an index, not a boolean selection,
    so selecting them needs no host round trip)."""
    return on_device(("outside", tuple(shape)),
                     lambda: np.flatnonzero(~circular_mask(tuple(shape))), device)


def rescale_per_pattern(stack: torch.Tensor, omin: float = 0.0, omax: float = 1.0) -> torch.Tensor:
    """Each pattern of float32 ``(n, sy, sx)`` stretched to [omin, omax]; a flat one to omin."""
    imin = stack.amin(dim=(1, 2), keepdim=True)
    imax = stack.amax(dim=(1, 2), keepdim=True)
    span = imax - imin
    span = torch.where(span == 0, torch.full_like(span, float("inf")), span)
    out = (stack - imin) / span
    out = out * float(omax - omin)
    return out + float(omin)


def remove_static_background(stack: torch.Tensor, static_bg: torch.Tensor,
                             operation: str = "subtract") -> torch.Tensor:
    """Subtract (or divide by) one float32 background pattern, then stretch each to [0, 1]."""
    if operation not in _OPERATIONS:
        raise ValueError(f"operation must be one of {_OPERATIONS}, got {operation!r}")
    out = stack - static_bg if operation == "subtract" else stack / static_bg
    return rescale_per_pattern(out)


def dynamic_background(stack: torch.Tensor, std: float | None = None,
                       truncate: float = 4.0) -> torch.Tensor:
    """Gaussian-blurred float32 ``(n, sy, sx)`` patterns (kikuchipy's filter, as matrices)."""
    iy, ix = stack.shape[-2:]
    std = ix / 8 if std is None else std
    by = on_device(("blur", iy, float(std), truncate), lambda: blur_matrix(iy, std, truncate),
                   stack.device)
    bx = on_device(("blur", ix, float(std), truncate), lambda: blur_matrix(ix, std, truncate),
                   stack.device)
    return torch.matmul(torch.matmul(by, stack), bx.T)


def remove_dynamic_background(stack: torch.Tensor, operation: str = "subtract",
                              std: float | None = None, truncate: float = 4.0) -> torch.Tensor:
    """Subtract (or divide by) each pattern's own blurred copy, then stretch each to [0, 1]."""
    if operation not in _OPERATIONS:
        raise ValueError(f"operation must be one of {_OPERATIONS}, got {operation!r}")
    background = dynamic_background(stack, std=std, truncate=truncate)
    if operation == "subtract":
        return rescale_per_pattern(stack - background)
    # Where a window sees only zeros (far outside a circular mask) the FFT filter leaves ~1e-9
    # and the numpy kernel divides 0 by it; the exact blur is 0 there: give the same 0.
    out = torch.where(background == 0, torch.zeros_like(stack), stack / background)
    return rescale_per_pattern(out)


def fill_outside_mask(stack: torch.Tensor) -> torch.Tensor:
    """As ``preprocess.background.fill_outside_mask``: the outside of the mask filled outward by
    normalised Gaussian averages of the signal inside it."""
    shape = tuple(stack.shape[-2:])
    out = stack
    for k, (std, known, weight, to_fill) in enumerate(fill_steps(shape)):
        known_t, weight_t, fill_t = (on_device((name, shape, k), lambda a=a: a, stack.device)
                                     for name, a in (("fill_known", known), ("fill_weight", weight),
                                                     ("fill_to", to_fill)))
        average = dynamic_background(out * known_t, std=std) / weight_t
        out = torch.where(fill_t, average, out)
    return out


def resample(stack: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Float32 ``(n, sy, sx)`` resampled to ``(n, *shape)`` with ``preprocess.resample``'s matrices."""
    sy, sx = stack.shape[-2:]
    ty, tx = int(shape[0]), int(shape[1])
    if (sy, sx) == (ty, tx):
        return stack
    ry = on_device(("resample", sy, ty), lambda: resample_matrix(sy, ty), stack.device)
    rx = on_device(("resample", sx, tx), lambda: resample_matrix(sx, tx), stack.device)
    return torch.matmul(torch.matmul(ry, stack), rx.T)


def blank_frames(stack: torch.Tensor) -> torch.Tensor:
    """Bool ``(n,)``: True where a pattern holds one value in every pixel."""
    flat = stack.reshape(stack.shape[0], -1)
    return flat.amax(dim=1) == flat.amin(dim=1)


def detect_masked(stack: torch.Tensor, unsigned: bool = False, rel_tol: float = 0.01,
                  min_fraction: float = 0.99) -> torch.Tensor:
    """Bool ``(n,)``, as ``preprocess.detect_masked`` with the circular mask of the patterns'
    shape: >= ``min_fraction`` of the pixels outside it lie within ``rel_tol`` of zero relative
    to the pattern's peak. ``unsigned``: the values came from an unsigned dtype (the peak is
    then the maximum alone)."""
    n = stack.shape[0]
    outside = _outside(tuple(stack.shape[-2:]), stack.device)
    if outside.numel() == 0:
        return torch.zeros(n, dtype=torch.bool, device=stack.device)
    flat = stack.reshape(n, -1)
    peak = flat.amax(dim=1).double()
    values = flat.index_select(1, outside)
    if not unsigned:
        peak = torch.maximum(peak, -flat.amin(dim=1).double())
        values = values.abs()
    near_zero = values.double() <= (rel_tol * peak)[:, None]
    share = near_zero.sum(dim=1, dtype=torch.float64) / values.shape[1]
    return (share >= min_fraction) & (peak > 0)


def preprocess_patterns(stack: torch.Tensor, background: dict[str, Any],
                        static_bg: torch.Tensor | None, work_shape: tuple[int, int],
                        masked: torch.Tensor) -> torch.Tensor:
    """Raw float32 ``(n, sy, sx)`` -> background-corrected float32 in [0, 1] at ``work_shape``.

    As ``separate.chunk.preprocess_patterns``; ``static_bg`` is already at ``work_shape`` and
    ``masked`` (n,) was decided at the patterns' own size.
    """
    stack = resample(stack, work_shape)
    static, dynamic = background_steps(background)
    if (static or dynamic) and min(stack.shape[-2:]) >= 3 and bool(masked.any()):
        # the blurs of background removal must see the detector's background, not the mask's zeros
        stack = torch.where(masked[:, None, None], fill_outside_mask(stack), stack)
    if static:
        if static_bg is None:
            raise ValueError("static background removal needs the background pattern")
        stack = remove_static_background(stack, static_bg, background["static_operation"])
    if dynamic:
        stack = remove_dynamic_background(stack, background["dynamic_operation"],
                                          background.get("dynamic_std"))
    if not (static or dynamic):
        stack = rescale_per_pattern(stack)
    if min(stack.shape[-2:]) >= 3:
        mask = mask_tensor(tuple(stack.shape[-2:]), stack.device)
        stack = torch.where(masked[:, None, None], stack * mask, stack)
    return stack


@lru_cache(maxsize=64)
def _percentile_positions(count: int, q: float) -> tuple[int, int, float]:
    """numpy's linear-method neighbours and weight for percentile ``q`` of ``count`` values (the
    same float64 arithmetic as ``np.percentile``)."""
    quantile = q / 100
    virtual = count * quantile + (1 + quantile * (1 - 1 - 1)) - 1
    previous = float(np.floor(virtual))
    following = previous + 1
    if virtual >= count - 1:
        previous = following = count - 1
    if virtual < 0:
        previous = following = 0
    return int(previous), int(following), virtual - np.floor(virtual)


def _lerp(low: torch.Tensor, high: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """numpy's ``_lerp``: float32 neighbours, their float32 difference, float64 interpolation."""
    diff = (high - low).double()
    return torch.where(gamma >= 0.5, high.double() - diff * (1 - gamma), low.double() + diff * gamma)


def _order_statistics(flat: torch.Tensor, out_of_stats: torch.Tensor, masked: torch.Tensor,
                      counts: tuple[int, int], ranks: list[tuple[int, int]]):
    """``value_at(rank_masked, rank_unmasked)``: each row's value of that ascending rank among its
    own pixels (a masked row has ``counts[0]`` of them, the others ``counts[1]``; ``out_of_stats``
    marks the rest). ``ranks``: every ``(rank_masked, rank_unmasked)`` to be asked for. A stretch
    asks for ranks near both ends, so they come from the few smallest and largest values (``topk``:
    the same values as a sort of every pixel, in a quarter of the time); ranks far from both ends
    fall back to the sort."""
    size = flat.shape[1]
    need = [(r, c) for pair in ranks for r, c in zip(pair, counts)]
    k_low = 1 + max((r for r, c in need if r < c / 2), default=-1)
    k_high = max((c - r for r, c in need if r >= c / 2), default=0)
    inf = torch.full((), float("inf"), dtype=flat.dtype, device=flat.device)
    if max(k_low, k_high) > size // 8:
        ordered = torch.where(out_of_stats, inf, flat).sort(dim=1).values  # outside sorts last

        def from_sort(rank_masked: int, rank_unmasked: int) -> torch.Tensor:
            return ordered.gather(1, torch.where(masked, rank_masked, rank_unmasked)[:, None])[:, 0]
        return from_sort
    low_first, high_first = torch.where(out_of_stats, inf, flat), torch.where(out_of_stats, -inf, flat)
    smallest = low_first.topk(k_low, dim=1, largest=False).values if k_low else None
    largest = high_first.topk(k_high, dim=1).values if k_high else None

    def from_ends(rank_masked: int, rank_unmasked: int) -> torch.Tensor:
        picked = [smallest[:, r] if r < c / 2 else largest[:, c - 1 - r]
                  for r, c in ((rank_masked, counts[0]), (rank_unmasked, counts[1]))]
        return torch.where(masked, picked[0], picked[1])
    return from_ends


def _limits(stack: torch.Tensor, masked: torch.Tensor, mask: torch.Tensor, method: str,
            percentiles) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pattern float64 ``(lo, hi)``: over the pixels inside ``mask`` for ``masked`` rows,
    over all pixels for the others (``model.inputs`` / ``preprocess.normalize``)."""
    n = stack.shape[0]
    flat = stack.reshape(n, -1)
    inside = mask.reshape(-1)
    out_of_stats = masked[:, None] & ~inside[None, :]
    if method == "minmax":
        inf = torch.full((), float("inf"), dtype=flat.dtype, device=flat.device)
        lo = torch.where(out_of_stats, inf, flat).amin(dim=1)
        hi = torch.where(out_of_stats, -inf, flat).amax(dim=1)
        return lo.double(), hi.double()
    counts = (flat.shape[1] - _outside(tuple(stack.shape[-2:]), stack.device).numel(), flat.shape[1])
    positions = [tuple(_percentile_positions(c, float(q)) for c in counts) for q in percentiles]
    ranks = [pair for (pm, fm, _), (pu, fu, _) in positions for pair in ((pm, pu), (fm, fu))]
    value_at = _order_statistics(flat, out_of_stats, masked, counts, ranks)
    limits = []
    for (pm, fm, gm), (pu, fu, gu) in positions:
        # Python scalars, not host tensors: no copy to the device, so no wait on its queue.
        gamma = torch.where(masked, torch.full((), gm, dtype=torch.float64, device=flat.device),
                            torch.full((), gu, dtype=torch.float64, device=flat.device))
        limits.append(_lerp(value_at(pm, pu), value_at(fm, fu), gamma))
    return limits[0], limits[1]


def prepare_inputs(stack: torch.Tensor, spec: dict[str, Any], masked: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 ``(n, sy, sx)`` -> (float32 [0, 1] model inputs, bool (n,) "was masked"), as
    ``model.inputs.prepare_inputs`` with a checked recipe ``spec``. ``masked``: which rows are
    masked when the caller already knows (else detected as ``spec`` says)."""
    stack = torch.nan_to_num(stack.float())
    mask = mask_tensor(tuple(stack.shape[-2:]), stack.device)
    if masked is None:
        masked = (detect_masked(stack) if spec["mask"] == "auto" and stack.shape[0]
                  else torch.zeros(stack.shape[0], dtype=torch.bool, device=stack.device))
    lo, hi = _limits(stack, masked, mask, spec["method"], tuple(spec["percentiles"]))
    span = hi - lo
    scale = torch.where(span > 0, 1.0 / torch.where(span > 0, span, torch.ones_like(span)),
                        torch.zeros_like(span))
    out = (stack - lo.float()[:, None, None]) * scale.float()[:, None, None]
    out = out.clamp_(0.0, 1.0)
    out = torch.where(masked[:, None, None], out * mask, out)
    return out, masked


_TORCH_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.int8): torch.int8,
                 np.dtype(np.int16): torch.int16, np.dtype(np.uint16): torch.uint16,
                 np.dtype(np.int32): torch.int32, np.dtype(np.float32): torch.float32,
                 np.dtype(np.float64): torch.float64}


def torch_dtype(dtype) -> torch.dtype | None:
    """The torch dtype of a numpy dtype (None where torch has no exact match)."""
    return _TORCH_DTYPES.get(np.dtype(dtype))


def to_dtype(unit: torch.Tensor, dtype, carrier: torch.dtype | None = None) -> torch.Tensor:
    """Float [0, 1] -> ``dtype`` as ``separate.chunk.to_dtype``: integers over their full range,
    rounded half to even in float64; floats stay [0, 1]. ``carrier`` replaces the integer dtype
    where the device cannot cast to it (the caller converts on the host; values are exact)."""
    dtype = np.dtype(dtype)
    unit = unit.clamp(0.0, 1.0)
    if dtype.kind in "ui":
        scaled = torch.round(unit.double() * float(np.iinfo(dtype).max))
        target = carrier or torch_dtype(dtype) or torch.int64
        if carrier is not None and carrier.itemsize <= dtype.itemsize and carrier.is_signed:
            # A signed view of an unsigned dtype: float -> wide int is exact, then the narrowing
            # keeps the low bits (float -> narrow int would saturate on some devices).
            return scaled.to(torch.int64).to(carrier)
        return scaled.to(target)
    return unit.to(torch_dtype(dtype) or torch.float64)
