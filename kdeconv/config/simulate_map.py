"""Config of ``kdeconv simulate-map`` (example: kdeconv/configs/simulate_map.yaml)."""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal

from pydantic import Field, field_validator, model_validator

from kdeconv.config import StrictModel
from kdeconv.config.detector import DetectorSpec
from kdeconv.config.generate import MasterSpec


class FootprintSpec(StrictModel):
    """Beam footprint on the sample, in scan pixels."""

    shape: Literal["gaussian", "disc"] = "gaussian"
    radius: float = Field(default=1.0, ge=0, le=20)   # disc radius, or 2 sigma for a Gaussian
    aspect_y: float = Field(default=1.0, gt=0, le=10)  # elongation along y (tilted sample)
    supersample: int = Field(default=6, ge=1, le=32)   # footprint samples per scan pixel


DEFAULT_SHAPE = (60, 60)


class DeformationSpec(StrictModel):
    """Lattice rotation inside the grains, as a deformed or recovered sample has (the default, all
    zero, gives each grain one orientation)."""

    # Each grain bends about its own random axis, by this many degrees per um of distance from
    # its seed along its own in-plane direction (a few tenths: a recovered grain; 1-2: deformed).
    gradient: float = Field(default=0.0, ge=0, le=20)
    # Each pixel's own misorientation about that field, rms degrees (what local misorientation
    # maps show: ~0.2 annealed, 0.5-1 deformed).
    scatter: float = Field(default=0.0, ge=0, le=10)

    @property
    def active(self) -> bool:
        return self.gradient > 0 or self.scatter > 0


class RealismSpec(StrictModel):
    """One camera for the whole map (kdeconv.generate.augment's model, fixed, not drawn)."""

    dose: float = Field(default=1500.0, ge=1)          # expected counts at the brightest pixel
    signal_fraction: float = Field(default=0.5, gt=0, le=1)
    blur_sigma: float = Field(default=0.5, ge=0, le=10)
    read_noise: float = Field(default=2.0, ge=0)
    background_width: float = Field(default=0.8, gt=0)
    background_dy: float = 0.05
    background_dx: float = 0.0
    # Detector effects, the same on every pattern of the map, as on one real camera:
    gain: float = Field(default=0.0, ge=0, le=1)       # std of the fixed-pattern gain (0: none)
    defect_fraction: float = Field(default=0.0, ge=0, le=0.05)  # share of hot/dead pixels
    bits: Literal[8, 16] = 16                          # 8: an 8-bit camera (written as UP1)
    # A round phosphor screen imaged onto the sensor: its radius in half shorter sides (1 = the
    # inscribed circle; None = no screen), light falling to `screen_floor` beyond its edge.
    screen_radius: float | None = Field(default=None, gt=0)
    screen_floor: float = Field(default=0.03, ge=0, le=1)
    # the screen's centre off the pattern's (dy, dx), in half shorter sides
    screen_offset: tuple[float, float] = (0.0, 0.0)


class ProcessedSpec(StrictModel):
    """The vendor-exported look (``style: processed``), as OIM, AZtec and Esprit export patterns."""

    # "detector": the camera's own background (its flat field, as a background acquisition
    # gives it); "map_mean": the map's mean pattern, blurred (width / 8), as `separate` does.
    static: Literal["detector", "map_mean"] = "detector"
    static_operation: Literal["divide", "subtract"] = "divide"
    dynamic: bool = True                               # Gaussian blur (std width / 8) subtracted
    mask: bool = True                                  # circular detector mask, zero outside
    # Each pattern stretched from these percentiles (inside the mask) to 0..255.
    stretch_percentiles: tuple[float, float] = (0.5, 99.5)

    @field_validator("stretch_percentiles")
    @classmethod
    def _percentiles(cls, v):
        if not 0 <= v[0] < v[1] <= 100:
            raise ValueError(f"stretch_percentiles {list(v)} must rise within 0..100")
        return v


class MapPhase(StrictModel):
    """One phase of the map: its master pattern and the share of grains it takes."""

    master: MasterSpec
    fraction: float = Field(default=1.0, gt=0)
    name: str | None = None   # default: the library phase, "ni", the kinematic phase or the file stem

    def label(self) -> str:
        m = self.master
        if self.name:
            return self.name
        if m.kind == "library":
            return str(m.phase)
        if m.kind == "kinematic":
            return m.phase.name if m.phase is not None else PurePath(m.cif).stem
        if m.kind == "emsoft":
            return PurePath(m.path).stem
        return "ni"


class SimulateMapConfig(StrictModel):
    seed: int = Field(default=0, ge=0)
    nav_shape: tuple[int, int] = (30, 30)                # (ny, nx) scan pixels
    step: float = Field(default=1.0, gt=0)              # scan step (µm), x and y
    n_grains: int = Field(default=12, ge=1)
    # One phase by name: "ni" (kikuchipy's bundled Ni master pattern) or a phase of kdeconv's
    # dynamical library (kdeconv.simulate.library_phases()). Or `phases:` instead.
    phase: str | None = None
    # Several phases (or any master pattern): each grain takes a phase, in these fractions of
    # the grains (e.g. duplex steel: fe_alpha 0.5 + fe_gamma 0.5).
    phases: list[MapPhase] | None = Field(default=None, min_length=1)
    energy: float = Field(default=20.0, ge=1, le=300)   # keV; library phases use their nearest energy
    footprint: FootprintSpec = FootprintSpec()
    deformation: DeformationSpec = DeformationSpec()
    min_weight: float = Field(default=0.05, ge=0, lt=0.5)  # smaller minority weights count as pure
    # The camera: shape (sy, sx) pixels, any aspect (default 60x60), pc (Bruker convention),
    # sample_tilt, tilt ...; written to the map's attrs.
    detector: DetectorSpec = DetectorSpec(shape=DEFAULT_SHAPE)
    realism: RealismSpec = RealismSpec()
    # "raw": the camera's counts (UP2, or UP1 for an 8-bit camera); "processed": the vendor-
    # exported look (background removed, masked, stretched, 8-bit UP1).
    style: Literal["raw", "processed"] = "raw"
    processed: ProcessedSpec = ProcessedSpec()
    chunk_mb: float = Field(default=32.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _default_shape(cls, data):
        detector = data.get("detector") if isinstance(data, dict) else None
        if isinstance(detector, dict) and "shape" not in detector:
            data = {**data, "detector": {**detector, "shape": DEFAULT_SHAPE}}
        return data

    @field_validator("detector")
    @classmethod
    def _detector(cls, v: DetectorSpec):
        if min(v.shape) < 16:
            raise ValueError(f"pattern shape {list(v.shape)} is too small to index (at least 16x16)")
        if max(v.shape) > 2048:
            raise ValueError(f"pattern shape {list(v.shape)} is larger than any detector (at most 2048)")
        if v.per_pattern:
            raise ValueError("a simulated map has one projection centre (pc: [PCx, PCy, PCz])")
        return v

    @field_validator("nav_shape")
    @classmethod
    def _nav(cls, v):
        if min(v) < 1:
            raise ValueError(f"nav_shape {list(v)} must be positive")
        return v

    @model_validator(mode="after")
    def _one_phase_source(self):
        if self.phase is not None and self.phases is not None:
            raise ValueError("give either 'phase' (a name) or 'phases' (a list), not both")
        labels = [p.label() for p in self.phases or []]
        if len(set(labels)) != len(labels):
            raise ValueError(f"phase names repeat in {labels}: give each phase its own 'name'")
        return self

    def map_phases(self) -> list[tuple[str, dict, float]]:
        """(name, load_master spec, fraction of grains) per phase; fractions sum to 1."""
        if self.phases is None:
            name = (self.phase or "ni").lower()
            spec = ({"kind": "nickel"} if name == "ni"
                    else {"kind": "library", "phase": name, "energy": self.energy})
            return [(name, spec, 1.0)]
        total = sum(p.fraction for p in self.phases)
        out = []
        for p in self.phases:
            spec = p.master.model_dump(mode="json", exclude_none=True)
            if p.master.kind != "kinematic":
                spec.pop("hkl_max", None), spec.pop("clip_percentile", None)
            if p.master.kind in ("library", "emsoft") and p.master.energy is None:
                spec["energy"] = self.energy
            out.append((p.label(), spec, p.fraction / total))
        return out
