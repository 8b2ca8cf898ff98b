"""Config of ``kdeconv generate`` (examples: kdeconv/configs/generate_debug.yaml; the shipped model's
training set: configs/generate_default.yaml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from kdeconv.config import StrictModel
from kdeconv.config.detector import DetectorSpec

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
    kind: Literal["nickel", "emsoft", "kinematic", "library"] = "nickel"
    path: str | None = None          # emsoft: the master-pattern .h5
    energy: float | None = None      # nickel/emsoft/library: keV (default 20)
    # kinematic: a phase description; library: a phase name of kdeconv's dynamical library
    phase: PhaseSpec | str | None = None
    cif: str | None = None           # kinematic
    hkl_max: int = Field(default=3, ge=1, le=6)
    clip_percentile: float = Field(default=99.5, gt=50, le=100)

    @model_validator(mode="after")
    def _needs(self):
        if self.kind == "emsoft" and not self.path:
            raise ValueError("an emsoft master pattern needs 'path'")
        if self.kind == "kinematic" and (self.phase is None) == (self.cif is None):
            raise ValueError("a kinematic master pattern needs exactly one of 'phase' or 'cif'")
        if self.kind == "kinematic" and isinstance(self.phase, str):
            raise ValueError("a kinematic master pattern needs a phase description "
                             "(space_group, lattice, atoms), not a name")
        if self.kind == "library" and not isinstance(self.phase, str):
            raise ValueError("a library master pattern needs 'phase': a library phase name")
        return self


class PhaseSource(StrictModel):
    """One phase of a multi-phase source and how often its pure patterns are drawn."""

    master: MasterSpec
    weight: float = Field(default=1.0, gt=0)


class SimulateSource(StrictModel):
    """Pure patterns simulated once each (orientation, PC, tilts drawn from (seed, index))."""

    kind: Literal["simulate"]
    master: MasterSpec = MasterSpec()
    # Several phases (each with a sampling weight) instead of `master`: pure patterns are shared
    # out in proportion to the weights; `cross_phase` of the pairs mix two different phases
    # (phase boundaries), the rest two grains of one phase (grain boundaries).
    phases: list[PhaseSource] | None = Field(default=None, min_length=1)
    cross_phase: float = Field(default=0.0, ge=0, le=1)
    # Beam energy (keV) drawn per pure pattern; each is simulated at the nearest energy its master
    # holds (the library holds 10, 15, 20, 25 and 30 kV). None: the master's own energy.
    energy: Range | None = None
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
        if self.energy is not None:
            _check_range(self.energy, "energy", 1.0, 300.0)
        if self.cross_phase > 0 and len(self.phase_sources()) < 2:
            raise ValueError("cross_phase needs at least two phases")
        return self

    def phase_sources(self) -> list[PhaseSource]:
        """The phases pure patterns are drawn from (``master`` alone is one phase)."""
        return self.phases if self.phases else [PhaseSource(master=self.master)]

    def fixed_detector(self) -> DetectorSpec | None:
        """The one detector of every pure pattern when the PC and both tilts are fixed, else None."""
        ranges = (self.pc_x, self.pc_y, self.pc_z, self.sample_tilt, self.camera_tilt)
        if any(float(lo) != float(hi) for lo, hi in ranges):
            return None
        return DetectorSpec(shape=self.shape, pc=(self.pc_x[0], self.pc_y[0], self.pc_z[0]),
                            sample_tilt=self.sample_tilt[0], tilt=self.camera_tilt[0])


class MapSource(StrictModel):
    """Pure patterns read from a map store (all patterns, or the listed flat indices)."""

    kind: Literal["map"]
    path: str
    indices: list[int] | None = None
    # A label per listed index (e.g. the phase): `cross_label` of the pairs mix two different
    # labels, the rest two patterns of one label.
    labels: list[int] | None = None
    label_names: list[str] | None = None
    cross_label: float = Field(default=0.0, ge=0, le=1)
    # raw_mix only: the targets A and B are trained on, one per listed index (in the order of
    # `indices`), instead of each pattern's own preprocessed copy. A Zarr array (n, sy, sx) in
    # [0, 1] at the model's working shape (adapt: the mean of each pattern's grain).
    targets: str | None = None
    # raw_mix only: the recordings' noise variance a*I + b (I in the map's counts; b may be
    # negative). A mix of two recordings carries less noise than one recording of the sum; each
    # mix is topped up to it.
    noise: tuple[float, float] | None = None

    @field_validator("indices")
    @classmethod
    def _indices(cls, v):
        if v is not None and len(v) == 0:
            raise ValueError("empty source: 'indices' lists no pattern")
        if v is not None and min(v) < 0:
            raise ValueError("indices must be >= 0")
        return v

    @model_validator(mode="after")
    def _labels(self):
        if self.targets is not None and (self.indices is None or len(set(self.indices)) != len(self.indices)):
            raise ValueError("targets need indices, one target per index, none repeated")
        if self.labels is None:
            if self.cross_label > 0:
                raise ValueError("cross_label needs labels")
            return self
        if self.indices is None or len(self.labels) != len(self.indices):
            raise ValueError("labels need indices, one label per index")
        if len(set(self.indices)) != len(self.indices):
            raise ValueError("labelled indices must not repeat")
        if min(self.labels) < 0:
            raise ValueError("labels must be >= 0")
        if self.label_names is not None and len(self.label_names) <= max(self.labels):
            raise ValueError("label_names must name every label")
        return self

    def pool_labels(self) -> list[int] | None:
        """Labels in pool order (the indices sorted), or None."""
        if self.labels is None:
            return None
        return [label for _, label in sorted(zip(self.indices, self.labels))]


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
    # pure patterns are made/read this much larger, then binned
    binning: int = Field(default=1, ge=1, le=8)
    crop: tuple[int, int, int, int] | None = None   # top, bottom, left, right (after binning)
    denoise_sigma: float = Field(default=0.0, ge=0)
    # C, A and B resampled to this shape after mixing (kdeconv.preprocess.resample), as
    # `separate` hands a small detector's patterns to a model with a larger working size.
    resample_to: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _resample_to(self):
        if self.resample_to is not None and min(self.resample_to) < 8:
            raise ValueError(f"resample_to {list(self.resample_to)} is smaller than 8 px")
        return self


class AugmentSpec(StrictModel):
    """Realism (on C only) and geometric augmentation (identical on A, B, C)."""

    realism: bool = False
    dose: Range = (300.0, 3000.0)            # expected counts at the brightest pixel
    read_noise: Range = (0.0, 5.0)           # Gaussian read noise, counts (std)
    blur_sigma: Range = (0.0, 1.0)           # px
    gamma: Range = (1.0, 1.0)
    signal_fraction: Range = (0.3, 0.8)      # Kikuchi contrast share on top of the background
    background_width: Range = (0.5, 1.2)     # Gaussian background std, in pattern heights
    background_shift: float = Field(default=0.2, ge=0, le=1)  # centre offset, in pattern heights
    background_correction: bool = True       # divide the true background out, as static correction would
    # Share of pairs whose C then also loses its dynamic background (C - Gaussian blur of C), as
    # `kdeconv separate` does to map patterns by default; the std is drawn in pattern widths
    # (separate's default is 1/8). Without it a model reads such pure patterns as mixed.
    dynamic_background: float = Field(default=0.0, ge=0, le=1)
    dynamic_std: Range = (0.1, 0.16)
    flips: bool = False                      # random flip / 90° rotation (180° only if not square)
    # Detector effects no simulation has, each on a share of the pairs (0 = never):
    gain: float = Field(default=0.0, ge=0, le=1)          # fixed-pattern gain non-uniformity
    gain_std: Range = (0.02, 0.1)                          # relative std of the gain map
    defects: float = Field(default=0.0, ge=0, le=1)       # hot (saturated) and dead (zero) pixels
    defect_fraction: Range = (1e-4, 2e-3)                  # share of the pixels
    quantize_8bit: float = Field(default=0.0, ge=0, le=1)  # C recorded or exported with 8 bits
    # The background subtracted (leaving its bright-centre envelope on the bands, as separate's
    # map-mean subtraction does) instead of divided out.
    subtract_background: float = Field(default=0.0, ge=0, le=1)
    @model_validator(mode="after")
    def _ranges(self):
        _check_range(self.dose, "dose", 1.0)
        _check_range(self.read_noise, "read_noise", 0.0)
        _check_range(self.blur_sigma, "blur_sigma", 0.0, 10.0)
        _check_range(self.gamma, "gamma", 0.05, 20.0)
        _check_range(self.signal_fraction, "signal_fraction", 0.01, 1.0)
        _check_range(self.background_width, "background_width", 0.05, 100.0)
        _check_range(self.dynamic_std, "dynamic_std", 0.01, 10.0)
        _check_range(self.gain_std, "gain_std", 0.0, 1.0)
        _check_range(self.defect_fraction, "defect_fraction", 0.0, 0.1)
        return self


class ModelInputSpec(StrictModel):
    """What `separate` does to a map before the model, for ``pipeline: raw_mix``."""

    # "raw": static (map mean) and dynamic background removal; "processed": neither.
    background: Literal["raw", "processed"] = "raw"
    static_background: str | None = None   # .npy float32 (sy, sx): the map's static background
    static_operation: Literal["subtract", "divide"] = "subtract"
    dynamic: bool = True
    dynamic_operation: Literal["subtract", "divide"] = "subtract"
    dynamic_std: float | None = Field(default=None, gt=0)  # px at the working size; None = width/8
    work_shape: tuple[int, int] | None = None  # the model's pattern shape; None = the map's
    mask: Literal["circle", "none"] = "none"   # "circle": raw patterns windowed first (a round screen)
    # with mask "circle": a round screen's square [top, left, side] that patterns are cut to first
    screen: tuple[int, int, int] | None = None

    def recipe(self) -> dict:
        """The background keys of kdeconv.config.separate.BackgroundConfig."""
        raw = self.background == "raw"
        return {"mode": self.background,
                "static": "map_mean" if raw and self.static_background else "none",
                "static_operation": self.static_operation, "dynamic": raw and self.dynamic,
                "dynamic_operation": self.dynamic_operation, "dynamic_std": self.dynamic_std,
                "mask": self.mask, "screen": list(self.screen) if self.screen else None}


class GenerateConfig(StrictModel):
    seed: int = Field(default=0, ge=0)
    n: int = Field(default=1000, ge=1)
    chunk_size: int = Field(default=256, ge=1)      # pairs per task and per Zarr chunk
    # raw_mix (map sources): C = wA*A + wB*B of the raw patterns, as the detector sums two
    # crystals, then C, A and B each get `model_input` (what separate does to a map).
    pipeline: Literal["normalize_then_mix", "mix_then_normalize", "raw_mix"] = "mix_then_normalize"
    source: Annotated[SimulateSource | MapSource, Field(discriminator="kind")]
    model_input: ModelInputSpec | None = None
    weights: WeightsSpec = WeightsSpec()
    mask: MaskSpec = MaskSpec()
    normalize: NormalizeSpec = NormalizeSpec()
    preprocess: PreprocessSpec = PreprocessSpec()
    augment: AugmentSpec = AugmentSpec()
    # Pairs are drawn in groups of `group_size` from a contiguous window of `window` pure patterns,
    # so a task reads a few contiguous slabs of the source instead of the whole of it.
    group_size: int = Field(default=1024, ge=1)
    window: int = Field(default=8192, ge=2)

    @model_validator(mode="after")
    def _raw_mix(self):
        if self.pipeline == "raw_mix" and (self.source.kind != "map" or self.model_input is None):
            raise ValueError("pipeline raw_mix needs a map source and model_input")
        if self.pipeline == "raw_mix" and self.preprocess.resample_to is not None:
            raise ValueError("pipeline raw_mix resamples with model_input.work_shape, not "
                             "preprocess.resample_to")
        return self

    def pairs_detector(self) -> DetectorSpec | None:
        """The detector of every pair's patterns: a simulated source's fixed detector, when the
        patterns are neither binned nor cropped; else None."""
        pre = self.preprocess
        if self.source.kind != "simulate" or pre.binning != 1 or pre.crop is not None \
                or pre.resample_to is not None:
            return None
        return self.source.fixed_detector()

    def content_key(self) -> dict:
        """Everything that decides the bytes of pair i (n and chunk_size do not)."""
        return self.model_dump(mode="json", exclude={"n", "chunk_size"})
