"""How a map is prepared for a model: the background recipe (raw or vendor-processed, decided per
map) and the pattern shape the model sees. ``separate`` and ``adapt`` both plan with it, so a
model is fine-tuned on exactly the input it will separate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdeconv.config.separate import BackgroundConfig
from kdeconv.preprocess.mask import screen_shape
from kdeconv.preprocess.resample import WorkingRange, working_range_of, working_shape

__all__ = ["ModelInputPlan", "plan_model_input", "sample_patterns", "resolve_background"]

# Patterns read to decide raw or processed: a few from each of up to this many chunks.
BACKGROUND_SAMPLE_CHUNKS = 16
BACKGROUND_SAMPLE_PER_CHUNK = 16
# Share of the detector circle's rim that may be dark before `separate` warns (stuck pixels and a
# raw background's falloff stay far below it).
DEAD_RIM_WARN = 0.05


def sample_patterns(src, chunks: int = BACKGROUND_SAMPLE_CHUNKS,
                    per_chunk: int = BACKGROUND_SAMPLE_PER_CHUNK) -> np.ndarray:
    """A spread sample ``(k, sy, sx)`` of a map's patterns, reading whole chunks (few of them)."""
    nav_shape = src.shape[:-2]
    # a Zarr array's chunk shape, or a Dask array's first chunk along each axis
    nav_chunks = tuple(c[0] if isinstance(c, tuple) else c for c in src.chunks[:-2])
    grid = [-(-n // c) for n, c in zip(nav_shape, nav_chunks)]
    n_chunks = int(np.prod(grid))
    picks = np.unique(np.linspace(0, n_chunks - 1, min(chunks, n_chunks)).round().astype(int))
    out = []
    for k in picks:
        index = np.unravel_index(k, grid)
        region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, nav_chunks))
        block = np.asarray(src[region]).reshape((-1,) + tuple(src.shape[-2:]))
        take = np.unique(np.linspace(0, len(block) - 1, min(per_chunk, len(block))).round().astype(int))
        out.append(block[take])
    return np.concatenate(out)


def resolve_background(src, background: BackgroundConfig) -> tuple[dict, dict]:
    """The background recipe the workers apply (mode "raw" or "processed", mask "circle" or
    "none", the screen's square or None) and the decision record."""
    from kdeconv.preprocess.background import decide_input
    from kdeconv.preprocess.mask import check_screen

    recipe = background.model_dump(mode="json")
    requested, requested_mask = recipe["mode"], recipe["mask"]
    check_screen(recipe["screen"], src.shape[-2:])
    sample = sample_patterns(src) if "auto" in (requested, requested_mask) else None
    decision = {"requested": requested, "requested_mask": requested_mask,
                "requested_screen": recipe["screen"],
                **decide_input(sample, requested, requested_mask, recipe["screen"])}
    recipe.update(mask=decision["mask"], mode=decision["mode"], screen=decision["screen"])
    if recipe["mode"] == "processed":
        recipe.update(static="none", dynamic=False)
    return recipe, decision


@dataclass
class ModelInputPlan:
    background: dict            # BackgroundConfig keys, mode resolved to "raw" or "processed"
    decision: dict              # what was asked, what was decided, and the evidence
    map_shape: tuple[int, int]  # the map's pattern shape
    work_shape: tuple[int, int]  # the shape the model sees
    working: WorkingRange       # the model's range of pattern sizes
    requested_size: int | None = None

    @property
    def screen_shape(self) -> tuple[int, int]:
        """The shape the model's steps cut patterns to: a round screen's square, or the map's."""
        return screen_shape(self.map_shape, self.background)

    @property
    def resampled(self) -> bool:
        return self.work_shape != self.screen_shape

    def working_record(self) -> dict:
        """For store attrs and provenance files."""
        return {"map_shape": list(self.map_shape), "screen": self.background.get("screen"),
                "model_shape": list(self.work_shape),
                "model_range": self.working.as_dict(), "requested": self.requested_size,
                "method": "area average down, linear up (kdeconv.preprocess.resample)"}

    def warning(self) -> str | None:
        """A ``Warning:`` line when part of the detector circle's rim sees nothing on the sampled
        mean and no round screen was found (``find_screen``): a dark edge that is not round, such
        as a shadow, which the mask leaves in."""
        rim = (self.decision.get("mask_evidence") or {}).get("dead_rim", 0.0)
        if rim < DEAD_RIM_WARN or self.background.get("screen") is not None:
            return None
        return (f"Warning: {100 * rim:.0f}% of the rim of the detector circle is dark in every "
                "pattern, and it is not a round screen's edge (a shadow?); the model sees that dark "
                "edge and A, B may be poor near it")

    def describe(self) -> str:
        """One line for the user: what was decided, and why."""
        evidence = self.decision.get("evidence")
        if not evidence:
            why = " (as asked)"
        elif evidence.get("signed"):
            why = (f" (decided from {evidence['n']} sampled patterns: they hold negative values, so "
                   "software made them, e.g. kikuchipy's normalize_intensity)")
        else:
            why = (f" (decided from {evidence['n']} sampled patterns: low-frequency share "
                   f"{evidence['lowfreq_share']:.3f}, rim/centre {evidence['falloff']:.2f})")
        line = f"background: {self.decision['mode']}{why}"
        box = self.background.get("screen")
        if box is not None:
            why = ("a round screen inside the pattern" if self.decision.get("requested_mask") == "auto"
                   and self.decision.get("requested_screen") is None else "as asked")
            line += (f"; patterns cut to the screen's {box[2]}x{box[2]} square at row {box[0]}, "
                     f"column {box[1]} and masked to its circle first ({why})")
        elif self.decision.get("mask") == "circle":
            why = ("its corners see nothing: a round screen or a filled mask"
                   if self.decision.get("requested_mask") == "auto" else "as asked")
            line += f"; patterns masked to the inscribed circle first ({why})"
        if self.resampled:
            line += (f"; patterns resampled {self.screen_shape[0]}x{self.screen_shape[1]} -> "
                     f"{self.work_shape[0]}x{self.work_shape[1]} for the model (its range "
                     f"{self.working.low}-{self.working.high} px)")
        return line


def plan_model_input(src, model_meta: dict, background: BackgroundConfig,
                     working_size: int | None = None) -> ModelInputPlan:
    """Plan for the map array ``src`` (…nav, sy, sx) and a model's checkpoint metadata."""
    map_shape = tuple(int(v) for v in src.shape[-2:])
    working = working_range_of(model_meta or {})
    recipe, decision = resolve_background(src, background)
    return ModelInputPlan(recipe, decision, map_shape,
                          working_shape(screen_shape(map_shape, recipe), working, working_size),
                          working, working_size)
