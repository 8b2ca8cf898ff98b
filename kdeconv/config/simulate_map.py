"""Config of ``kdeconv simulate-map`` (example: configs/simulate_map.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from kdeconv.config import StrictModel


class FootprintSpec(StrictModel):
    """Beam footprint on the sample, in scan pixels."""

    shape: Literal["gaussian", "disc"] = "gaussian"
    radius: float = Field(default=1.0, ge=0, le=20)   # disc radius, or 2 sigma for a Gaussian
    aspect_y: float = Field(default=1.0, gt=0, le=10)  # elongation along y (tilted sample)
    supersample: int = Field(default=6, ge=1, le=32)   # footprint samples per scan pixel


class MapDetectorSpec(StrictModel):
    shape: tuple[int, int] = (60, 60)
    pc: tuple[float, float, float] = (0.5, 0.5, 0.5)  # Bruker convention
    sample_tilt: float = Field(default=70.0, ge=-90, le=90)
    tilt: float = Field(default=0.0, ge=-90, le=90)

    @field_validator("shape")
    @classmethod
    def _shape(cls, v):
        if min(v) < 16:
            raise ValueError(f"pattern shape {list(v)} is too small to index (at least 16x16)")
        return v


class RealismSpec(StrictModel):
    """One camera setting for the whole map (as kdeconv.generate.augment, fixed, not drawn)."""

    dose: float = Field(default=1500.0, ge=1)          # expected counts at the brightest pixel
    signal_fraction: float = Field(default=0.5, gt=0, le=1)
    blur_sigma: float = Field(default=0.5, ge=0, le=10)
    read_noise: float = Field(default=2.0, ge=0)
    background_width: float = Field(default=0.8, gt=0)
    background_dy: float = 0.05
    background_dx: float = 0.0


class SimulateMapConfig(StrictModel):
    seed: int = Field(default=0, ge=0)
    nav_shape: tuple[int, int] = (30, 30)                # (ny, nx) scan pixels
    step: float = Field(default=1.0, gt=0)              # scan step (µm), x and y
    n_grains: int = Field(default=12, ge=1)
    phase: Literal["ni"] = "ni"                          # kikuchipy's bundled Ni master pattern
    footprint: FootprintSpec = FootprintSpec()
    min_weight: float = Field(default=0.05, ge=0, lt=0.5)  # smaller minority weights count as pure
    detector: MapDetectorSpec = MapDetectorSpec()
    realism: RealismSpec = RealismSpec()
    chunk_mb: float = Field(default=32.0, gt=0)

    @field_validator("nav_shape")
    @classmethod
    def _nav(cls, v):
        if min(v) < 1:
            raise ValueError(f"nav_shape {list(v)} must be positive")
        return v
