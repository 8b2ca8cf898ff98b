"""The EBSD detector, one model for every place kdeconv meets one.

A ``DetectorSpec`` is what store attrs hold (``attrs["source"]["detector"]`` of a map, the
``detector`` of a truth or pairs store), what the ``detector:`` sections of the evaluate and
simulate-map configs give, and what kikuchipy's ``EBSDDetector`` is built from. The projection
centre is stored in kikuchipy's Bruker convention unless ``convention`` says otherwise; it is one
(PCx, PCy, PCz) or one per pattern (a nested list, last axis 3). kikuchipy is imported only by
the conversions.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator

from kdeconv.config import StrictModel
from kdeconv.errors import InputError

__all__ = ["DetectorSpec", "MAX_PC_IN_ATTRS"]

# Per-pattern projection centres are kept in attrs up to this many; above it, their mean.
MAX_PC_IN_ATTRS = 4096

Convention = Literal["bruker", "tsl", "edax", "amatek", "oxford", "aztec", "emsoft", "emsoft4", "emsoft5"]


class DetectorSpec(StrictModel):
    shape: tuple[int, int]                          # (sy, sx) pixels of the patterns
    pc: tuple[float, float, float] | list[Any] = (0.5, 0.5, 0.5)  # one PC, or one per pattern
    sample_tilt: float = Field(default=70.0, ge=-90, le=90)   # degrees
    tilt: float = Field(default=0.0, ge=-90, le=90)           # camera tilt, degrees
    azimuthal: float = 0.0
    twist: float = 0.0
    binning: int = Field(default=1, ge=1)
    px_size: float = Field(default=1.0, gt=0)                 # µm, unbinned
    convention: Convention = "bruker"
    pc_note: str | None = None                                # how ``pc`` was reduced, if it was

    @field_validator("shape")
    @classmethod
    def _shape(cls, v):
        if min(v) < 1:
            raise ValueError(f"detector shape {list(v)} must be positive")
        return v

    @field_validator("pc", mode="before")
    @classmethod
    def _pc(cls, v):
        try:
            values = np.asarray(v, dtype=float)
        except (TypeError, ValueError):
            raise ValueError("pc must be (PCx, PCy, PCz) or a nested list of them") from None
        if values.ndim < 1 or values.shape[-1] != 3 or not np.isfinite(values).all():
            raise ValueError(f"pc must be finite (PCx, PCy, PCz) values, got shape {list(values.shape)}")
        return tuple(float(x) for x in values) if values.ndim == 1 else values.tolist()

    # ------------------------------------------------------------------ projection centres

    def pc_array(self) -> np.ndarray:
        """The projection centre(s) as float64 ``(..., 3)``."""
        return np.asarray(self.pc, dtype=np.float64)

    @property
    def per_pattern(self) -> bool:
        return self.pc_array().ndim > 1

    def single(self) -> DetectorSpec:
        """This detector with one projection centre (the mean of per-pattern ones)."""
        if not self.per_pattern:
            return self
        mean = self.pc_array().reshape(-1, 3).mean(axis=0)
        return self.model_copy(update={"pc": tuple(float(x) for x in mean)})

    # ------------------------------------------------------------------ conversions

    def to_kikuchipy(self, nav_shape: tuple[int, ...] | None = None):
        """kikuchipy's ``EBSDDetector``. Per-pattern PCs are shaped to ``nav_shape`` when they
        match it; otherwise (or without ``nav_shape``) their mean is used."""
        from kikuchipy.detectors import EBSDDetector

        pc = self.pc_array()
        if pc.ndim > 1:
            n = int(np.prod(nav_shape)) if nav_shape else -1
            pc = pc.reshape(tuple(nav_shape) + (3,)) if pc.size == 3 * n else pc.reshape(-1, 3).mean(axis=0)
        return EBSDDetector(shape=tuple(int(v) for v in self.shape), pc=pc,
                            sample_tilt=float(self.sample_tilt), tilt=float(self.tilt),
                            azimuthal=float(self.azimuthal), twist=float(self.twist),
                            binning=int(self.binning), px_size=float(self.px_size),
                            convention=self.convention)

    @classmethod
    def from_kikuchipy(cls, detector, max_pcs: int = MAX_PC_IN_ATTRS) -> DetectorSpec:
        """From an ``EBSDDetector`` (its PC in the Bruker convention, as ``detector.pc`` gives it):
        one PC when all patterns share it, per-pattern PCs up to ``max_pcs``, else their mean."""
        pc = np.asarray(detector.pc, dtype=float)
        rows = pc.reshape(-1, 3)
        note = None
        if np.allclose(rows, rows[0]):
            value: Any = rows[0].tolist()
        elif len(rows) <= max_pcs:
            value = pc.tolist()
        else:
            value, note = rows.mean(axis=0).tolist(), "mean of a per-pattern PC array too large for attrs"
        return cls(shape=tuple(int(v) for v in detector.shape), pc=value,
                   sample_tilt=float(detector.sample_tilt), tilt=float(detector.tilt),
                   azimuthal=float(detector.azimuthal), twist=float(detector.twist),
                   binning=int(detector.binning), px_size=float(detector.px_size), convention="bruker",
                   pc_note=note)

    def to_attrs(self) -> dict[str, Any]:
        """Plain JSON for store attrs (read back with ``from_attrs``)."""
        attrs = self.model_dump(mode="json", exclude_none=True)
        attrs["shape"], attrs["pc"] = list(self.shape), (list(self.pc) if not self.per_pattern else self.pc)
        return attrs

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], where: str = "detector attrs") -> DetectorSpec:
        """From store attrs; damaged ones are a one-line ``InputError``."""
        try:
            return cls.model_validate(dict(attrs))
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "<root>"
            raise InputError(f"{where}: {field}: {first['msg']}") from None
        except TypeError:
            raise InputError(f"{where}: not a mapping ({type(attrs).__name__})") from None
