"""Which shipped model separates a map: the size's default or the broad-looks model, chosen on the map.

The default is the pattern size's: patterns whose shorter side is below
``kdeconv.model.SMALL_PATTERNS_BELOW`` px go to the small-pattern model
(``kdeconv.model.SMALL_PATTERNS_CHECKPOINT``), which learnt them upsampled to the working size,
as ``separate`` runs them; larger ones to ``kdeconv.model.DEFAULT_CHECKPOINT``.

That default is best on maps whose bands look like the dynamical library's; the broad-looks
model (``kdeconv.model.BROAD_LOOKS_CHECKPOINT``) also learnt band profiles of other simulators
(kinematic master patterns), and is weaker on the dynamical ones. No truth is needed to tell
which suits a map: a mixed pixel's B is a crystal that a pixel nearby holds pure, so the better
model's B looks more like the map's own neighbouring patterns. Both models separate one window
of the map; the broad-looks model is chosen when its B matches a neighbouring pattern (one
unlike the pixel's A) better on most of the window's mixed pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["WINDOW", "MIN_SIDE", "MIN_PIXELS", "size_default", "adapt_base_for", "adapt_lr_for",
           "neighbour_support", "choose_shipped_model", "describe_model_choice"]

WINDOW = 20       # scan pixels per side of the window both models separate (400 patterns each)
MIN_SIDE = 8      # maps (or line scans, stacks) smaller than this on a side keep the size's default
MIN_PIXELS = 16   # mixed pixels needed for a vote
RADIUS = 3        # scan steps: where B's crystal must be seen (as the claim rule's neighbours)
MINORITY = 0.2    # a pixel is voted on where both models read a minority at least this
# A neighbour "unlike A": its NCC with the pixel's A below this share of the pixel's own C's
SAME_CRYSTAL = 0.5


def neighbour_support(refs: np.ndarray, a: np.ndarray, b: np.ndarray, pixels: np.ndarray,
                      radius: int = RADIUS, mask: np.ndarray | None = None) -> np.ndarray:
    """Per pixel (y, x) of ``pixels``: the best NCC of its B with a pattern of ``refs`` within
    ``radius`` scan steps that is unlike its A (another crystal). ``refs``, ``a`` and ``b`` are
    (ny, nx, sy, sx); ``refs`` are the map's own preprocessed patterns; ``mask`` (sy, sx): the
    pixels compared (default all). 0 where no such neighbour."""
    from kdeconv.evaluate.metrics import ncc

    out = np.zeros(len(pixels))
    for k, (y, x) in enumerate(pixels):
        near = refs[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1]
        near = near.reshape(-1, *refs.shape[-2:])
        own = ncc(a[y, x], refs[y, x], mask)[0]
        other = near[ncc(np.broadcast_to(a[y, x], near.shape), near, mask) < SAME_CRYSTAL * own]
        if len(other):
            out[k] = ncc(np.broadcast_to(b[y, x], other.shape), other, mask).max()
    return out


def _boundaries(refs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pixels (ny, nx) less like their least similar 4-neighbour than the window's median pixel
    is: boundaries and their mixtures, not the grain interiors a model may misread as mixed.
    Compared on the pattern pixels of ``mask``."""
    from kdeconv.adapt.pure import neighbour_similarity

    ny, nx = refs.shape[:2]
    flat = refs[..., mask].reshape(ny, nx, -1).astype(np.float64)
    flat = flat - flat.mean(axis=-1, keepdims=True)
    flat /= np.linalg.norm(flat, axis=-1, keepdims=True) + 1e-12
    right_down = neighbour_similarity(flat, reach=1)[..., :2]  # with (0, 1) and (1, 0)
    left, up = np.full((ny, nx), np.nan), np.full((ny, nx), np.nan)
    left[:, 1:], up[1:] = right_down[:, :-1, 0], right_down[:-1, :, 1]
    least = np.nan_to_num(np.fmin.reduce([right_down[..., 0], right_down[..., 1], left, up]), nan=1.0)
    return least < np.median(least)


def _window(nav_shape: tuple[int, ...]) -> tuple[slice, slice] | None:
    """The centred window both models separate; None for maps too small to vote."""
    if len(nav_shape) != 2 or min(nav_shape) < MIN_SIDE:
        return None
    return tuple(slice((n - min(n, WINDOW)) // 2, (n - min(n, WINDOW)) // 2 + min(n, WINDOW))
                 for n in nav_shape)


def size_default(pattern_shape) -> Path:
    """The shipped model for patterns of ``pattern_shape`` (sy, sx) before any vote: the
    small-pattern model below ``SMALL_PATTERNS_BELOW`` px (when installed), else the default."""
    import kdeconv.model as model

    small = Path(model.SMALL_PATTERNS_CHECKPOINT)
    if min(int(v) for v in pattern_shape) < model.SMALL_PATTERNS_BELOW and small.is_file():
        return small
    return Path(model.DEFAULT_CHECKPOINT)


def adapt_base_for(pattern_shape) -> Path:
    """The shipped model ``adapt`` starts from for patterns of ``pattern_shape``: the
    small-pattern model where ``size_default`` picks it (measured at 60x60: adapted from it, hcp
    alpha-Ti reached 93% at minority >= 0.25 against 64% from the adapt base), else the adapt base."""
    import kdeconv.model as model

    small = size_default(pattern_shape)
    return small if small != Path(model.DEFAULT_CHECKPOINT) else Path(model.ADAPT_BASE_CHECKPOINT)


# adapt's peak learning rate. A large step takes a base to a map it is far from: kikuchipy's real Ni
# (the small-pattern model's held-out weight error 0.20) gave both grains on 1.00 of its held-out
# mixtures at 6e-4, 0.74 at 2e-4. Where the small-pattern model already reads the map's own mixtures
# (weight error 0.03-0.05 on simulated 60 px maps) a gentle one keeps what it knows: a binned 8-bit
# camera 86.7% at 2e-4 against 72.4% at 6e-4, alpha-Ti 94.3 / 93.3%, Mg 89.5 / 86.7%. The adapt base
# keeps the large step even where it reads the map (processed Mg at 120 px: 95.2% at 6e-4, 91.4% at 2e-4).
ADAPT_LR = 6e-4
ADAPT_LR_GENTLE = 2e-4
GENTLE_BELOW = 0.1  # the base's median weight error on the held-out pairs


def adapt_lr_for(base_path, base_weight_error: float) -> float:
    """``adapt``'s learning rate for the base at ``base_path``, whose median weight error on the
    map's held-out pairs is ``base_weight_error``: gentle from the small-pattern model where it
    already reads the map's mixtures, else the large step."""
    import kdeconv.model as model

    small = Path(model.SMALL_PATTERNS_CHECKPOINT)
    is_small = small.is_file() and Path(base_path).resolve() == small.resolve()
    return ADAPT_LR_GENTLE if is_small and base_weight_error < GENTLE_BELOW else ADAPT_LR


def _model_name(checkpoint: Path) -> str:
    info = checkpoint.with_suffix(".json")
    name = json.loads(info.read_text()).get("name") if info.is_file() else None
    return name or checkpoint.stem


def choose_shipped_model(src, background: dict[str, Any], work_shape, *, device: str, precision: str,
                         batch_size: int | None, residual_pass: float | None,
                         separate_block, pattern_shape=None) -> dict[str, Any]:
    """Separate a window of the map ``src`` (a zarr array (ny, nx, sy, sx)) with the size's
    default (``size_default`` of ``pattern_shape``, the patterns the model's steps start from;
    ``src``'s when None) and the broad-looks model (``separate_block``: the driver's per-block
    task) and choose one.

    Returns the record stored in the separated store's attrs: ``checkpoint`` (None = the
    default, ``kdeconv.model.DEFAULT_CHECKPOINT``), ``chosen``, ``window``, ``pixels`` voted on,
    ``broad_looks_wins`` (share), each model's median support (``default`` is the size's
    default), which ``won`` ("default" or "broad_looks") and the model it won ``over``;
    ``size_rule`` when the size's default is not the default; ``reason`` when no vote was held."""
    import kdeconv.model as model
    from kdeconv.preprocess.background import static_background_from_mean
    from kdeconv.preprocess.mask import screen_shape, signal_pixels, to_screen
    from kdeconv.preprocess.resample import resample
    from kdeconv.separate.chunk import blank_frames, preprocess_patterns
    from kdeconv.separate.neighbour_fit import preprocess_shape

    default = size_default(src.shape[-2:] if pattern_shape is None else pattern_shape)
    broad = Path(model.BROAD_LOOKS_CHECKPOINT)
    record: dict[str, Any] = {
        "checkpoint": None if default == Path(model.DEFAULT_CHECKPOINT) else str(default),
        "chosen": _model_name(default)}
    if record["checkpoint"]:
        record["size_rule"] = f"shorter side below {model.SMALL_PATTERNS_BELOW} px"
    window = _window(tuple(src.shape[:-2]))
    if not broad.is_file():
        return {**record, "reason": "no broad-looks model in this installation"}
    if window is None:
        return {**record, "reason": f"not a map of at least {MIN_SIDE}x{MIN_SIDE} scan pixels"}
    block = np.asarray(src[window])
    ny, nx = block.shape[:2]
    flat = block.reshape(ny * nx, *block.shape[-2:])
    keep = ~blank_frames(flat)
    static_bg = None
    if background.get("static", "none") != "none" and keep.any():
        static_bg = static_background_from_mean(flat[keep].astype(np.float64).mean(axis=0),
                                                background.get("static_smooth_std", "auto"),
                                                background=background)
    # compared as the neighbour fit compares: a round screen's square, at most PREPROCESS_SIDE
    shape = preprocess_shape(screen_shape(block.shape[-2:], background))
    refs = preprocess_patterns(flat, background, static_bg, work_shape=shape)
    refs = refs.reshape((ny, nx) + refs.shape[-2:])
    outputs = {}
    for name, path in (("default", default), ("broad_looks", broad)):
        outputs[name] = separate_block(block, checkpoint=str(path), sha256=model.file_sha256(path),
                                       device=device, precision=precision, batch_size=batch_size,
                                       background=background, static_bg=static_bg,
                                       work_shape=work_shape, residual_pass=residual_pass)
    # voted where both read a second crystal: a pure pixel that one model misreads as a mixture
    # has no true B to match, so it would only add a coin toss
    minority = np.minimum(*(np.nan_to_num(np.min(w, axis=-1)) for _, _, w in outputs.values()))
    signal = signal_pixels(refs)
    pixels = np.argwhere((minority >= MINORITY) & keep.reshape(ny, nx) & _boundaries(refs, signal))
    record.update(window=[[s.start, s.stop] for s in window], pixels=int(len(pixels)))
    if len(pixels) < MIN_PIXELS:
        return {**record, "reason": f"{len(pixels)} mixed pixels in the window (a vote needs {MIN_PIXELS})"}
    at = tuple(pixels.T)

    def compared(patterns):  # the voted pixels' outputs as refs are compared (zero elsewhere)
        out = np.zeros(refs.shape, np.float32)
        out[at] = resample(to_screen(patterns[at], background), shape)
        return out

    support = {name: neighbour_support(refs, compared(a), compared(b), pixels, mask=signal)
               for name, (a, b, _) in outputs.items()}
    wins = float(np.mean(support["broad_looks"] > support["default"]))
    medians = {name: round(float(np.median(s)), 4) for name, s in support.items()}
    record.update(broad_looks_wins=round(wins, 4), median_support=medians)
    broad_won = wins > 0.5 and medians["broad_looks"] > medians["default"]
    if broad_won:
        record.update(checkpoint=str(broad), chosen=_model_name(broad))
    record.update(won="broad_looks" if broad_won else "default",
                  over=_model_name(default if broad_won else broad))
    return record


def describe_model_choice(record: dict[str, Any]) -> str:
    """One line for the summary: which model, and why."""
    size = f"the default for patterns with a {record['size_rule']}" if "size_rule" in record else "default"
    if "reason" in record:
        return f"model: {record['chosen']} ({size}; no choice: {record['reason']})"
    broad_won = record["won"] == "broad_looks"
    share = record["broad_looks_wins"] if broad_won else 1 - record["broad_looks_wins"]
    ours = record["median_support"]["broad_looks" if broad_won else "default"]
    theirs = record["median_support"]["default" if broad_won else "broad_looks"]
    other = f"{'default' if broad_won else 'broad-looks'} model ({record['over']})"
    size = f" ({size})" if "size_rule" in record and not broad_won else ""
    return (f"model: {record['chosen']}{size}, chosen over the {other} on a "
            f"window of the map: its B matches the map's neighbouring patterns better on "
            f"{100 * share:.0f}% of {record['pixels']} mixed pixels (median NCC {ours:.2f} against "
            f"{theirs:.2f})")
