"""Pattern preprocessing kernels (pure numpy on ``(n, sy, sx)`` stacks): mask, normalise, crop,
denoise. Background removal lives in ``kdeconv.preprocess.background``."""

from kdeconv.preprocess.mask import apply_mask, circular_mask, detect_masked, mask_geometry, pixels_in
from kdeconv.preprocess.normalize import crop, denoise, normalize, normalize_limits

__all__ = ["circular_mask", "mask_geometry", "detect_masked", "apply_mask", "pixels_in", "normalize",
           "normalize_limits", "crop", "denoise"]
