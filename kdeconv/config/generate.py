"""Config of ``kdeconv generate`` (example: configs/generate_default.yaml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from kdeconv.config import StrictModel

Range = tuple[float, float]


def _check_range(value: Range, name: str, lo: float | None = None, hi: float | None = None) -> Range:
    a, b = value
    if a > b:
        raise ValueError(f"{name}: low {a} > high {b}")
    if lo is not None and a < lo:
        raise ValueError(f"{name}: {a} is below {lo}")
    if hi is not None and b > hi:
        raise ValueError(f"{name}: {b} is above {hi}")
    return value


class AtomSpec(StrictModel):
    element: str
    xyz: tuple[float, float, float]
    occupancy: float = Field(default=1.0, gt=0, le=1)
    uiso: float = Field(default=0.005, ge=0)


class PhaseSpec(StrictModel):
    name: str = "phase"
    space_group: int = Field(ge=1, le=230)
    lattice: tuple[float, float, float, float, float, float]  # a, b, c (Å), alpha, beta, gamma (deg)
    atoms: list[AtomSpec] = Field(min_length=1)


class MasterSpec(StrictModel):
    kind: Literal["nickel", "emsoft", "kinematic"] = "nickel"
    path: str | None = None          # emsoft: the master-pattern .h5
    energy: float | None = None      # nickel/emsoft: keV (default 20)
    phase: PhaseSpec | None = None   # kinematic
    cif: str | None = None           # kinematic
    hkl_max: int = Field(default=3, ge=1, le=6)
    clip_percentile: float = Field(default=99.5, gt=50, le=100)

    @model_validator(mode="after")
    def _needs(self):
        if self.kind == "emsoft" and not self.path:
            raise ValueError("an emsoft master pattern needs 'path'")
        if self.kind == "kinematic" and (self.phase is None) == (self.cif is None):
            raise ValueError("a kinematic master pattern needs exactly one of 'phase' or 'cif'")
        return self


class SimulateSource(StrictModel):
    """Pure patterns simulated once each (orientation, PC, tilts drawn from (seed, index))."""

    kind: Literal["simulate"]
    master: MasterSpec = MasterSpec()
    n_pure: int = Field(default=2000, ge=1)
    shape: tuple[int, int] = (60, 60)
    pc_x: Range = (0.5, 0.5)
    pc_y: Range = (0.5, 0.5)
    pc_z: Range = (0.5, 0.5)
    sample_tilt: Range = (70.0, 70.0)
    camera_tilt: Range = (0.0, 0.0)

    @field_validator("shape")
    @classmethod
    def _shape(cls, v):
        if min(v) < 8:
            raise ValueError(f"pattern shape {list(v)} is too small (at least 8x8)")
        return v

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("pc_x", "pc_y"):
            _check_range(getattr(self, name), name, -1.0, 2.0)
        _check_range(self.pc_z, "pc_z", 1e-3, 10.0)
        _check_range(self.sample_tilt, "sample_tilt", -90.0, 90.0)
        _check_range(self.camera_tilt, "camera_tilt", -90.0, 90.0)
        return self


class MapSource(StrictModel):
    """Pure patterns read from a map store (all patterns, or the listed flat indices)."""

    kind: Literal["map"]
    path: str
    indices: list[int] | None = None

    @field_validator("indices")
    @classmethod
    def _indices(cls, v):
        if v is not None and len(v) == 0:
            raise ValueError("empty source: 'indices' lists no pattern")
        if v is not None and min(v) < 0:
            raise ValueError("indices must be >= 0")
        return v


class WeightsSpec(StrictModel):
    low: float = Field(default=0.1, ge=0, le=1)     # wA ~ U(low, high)
    high: float = Field(default=0.9, ge=0, le=1)
    # Share of pairs that are (almost) pure: wA ~ U(pure_low, 1) for them.
    pure_fraction: float = Field(default=0.0, ge=0, le=1)
    pure_low: float = Field(default=0.95, ge=0, le=1)
    # Swap A and B so that wA >= wB, as `separate` reports A as the dominant constituent.
    dominant_first: bool = True

    @model_validator(mode="after")
    def _order(self):
        _check_range((self.low, self.high), "weights low/high", 0, 1)
        return self


class MaskSpec(StrictModel):
    # Share of pairs given the circular mask: on by default (`kdeconv generate --no-mask` sets 0).
    fraction: float = Field(default=1.0, ge=0, le=1)
    radius: float | None = Field(default=None, gt=0)  # px; None = largest inscribed circle


class NormalizeSpec(StrictModel):
    method: Literal["minmax", "percentile"] = "minmax"
    smart: bool = True
    percentiles: tuple[float, float] = (0.5, 99.5)

    @model_validator(mode="after")
    def _p(self):
        _check_range(self.percentiles, "percentiles", 0, 100)
        return self


class PreprocessSpec(StrictModel):
    binning: int = Field(default=1, ge=1, le=8)     # pure patterns are made/read this much larger, then binned
    crop: tuple[int, int, int, int] | None = None   # top, bottom, left, right (after binning)
    denoise_sigma: float = Field(default=0.0, ge=0)


class AugmentSpec(StrictModel):
    """Realism (on C only) and geometric augmentation (identical on A, B, C)."""

    realism: bool = False
    dose: Range = (300.0, 3000.0)            # expected counts at the brightest pixel
    read_noise: Range = (0.0, 5.0)           # Gaussian read noise, counts (std)
    blur_sigma: Range = (0.0, 1.0)           # px
    gamma: Range = (1.0, 1.0)
    signal_fraction: Range = (0.3, 0.8)      # Kikuchi contrast share on top of the background
    background_width: Range = (0.5, 1.2)     # Gaussian background std, in pattern widths
    background_shift: float = Field(default=0.2, ge=0, le=1)  # centre offset, in pattern widths
    background_correction: bool = True       # divide the true background out, as static correction would
    # Share of pairs whose C then also loses its dynamic background (C - Gaussian blur of C), as
    # `kdeconv separate` does to map patterns by default; the std is drawn in pattern widths
    # (separate's default is 1/8). Without it a model reads such pure patterns as mixed.
    dynamic_background: float = Field(default=0.0, ge=0, le=1)
    dynamic_std: Range = (0.1, 0.16)
    flips: bool = False                      # random flip / 90° rotation (180° only if not square)

    @model_validator(mode="after")
    def _ranges(self):
        _check_range(self.dose, "dose", 1.0)
        _check_range(self.read_noise, "read_noise", 0.0)
        _check_range(self.blur_sigma, "blur_sigma", 0.0, 10.0)
        _check_range(self.gamma, "gamma", 0.05, 20.0)
        _check_range(self.signal_fraction, "signal_fraction", 0.01, 1.0)
        _check_range(self.background_width, "background_width", 0.05, 100.0)
        _check_range(self.dynamic_std, "dynamic_std", 0.01, 10.0)
        return self


class GenerateConfig(StrictModel):
    seed: int = Field(default=0, ge=0)
    n: int = Field(default=1000, ge=1)
    chunk_size: int = Field(default=256, ge=1)      # pairs per task and per Zarr chunk
    pipeline: Literal["normalize_then_mix", "mix_then_normalize"] = "mix_then_normalize"
    source: Annotated[SimulateSource | MapSource, Field(discriminator="kind")]
    weights: WeightsSpec = WeightsSpec()
    mask: MaskSpec = MaskSpec()
    normalize: NormalizeSpec = NormalizeSpec()
    preprocess: PreprocessSpec = PreprocessSpec()
    augment: AugmentSpec = AugmentSpec()
    # Pairs are drawn in groups of `group_size` from a contiguous window of `window` pure patterns,
    # so a task reads a few contiguous slabs of the source instead of the whole of it.
    group_size: int = Field(default=1024, ge=1)
    window: int = Field(default=8192, ge=2)

    def content_key(self) -> dict:
        """Everything that decides the bytes of pair i (n and chunk_size do not)."""
        return self.model_dump(mode="json", exclude={"n", "chunk_size"})
