"""Architecture of the separation model (kdeconv.model.unet builds it); no torch here, so configs
that embed it load without torch."""

from __future__ import annotations

from pydantic import Field

from kdeconv.config import StrictModel

__all__ = ["UNetConfig", "ENCODER_MODULES", "HEAD_MODULES"]

# Top-level module names of DualDecoderUNet, for TrainConfig.freeze and head_lr_scale: the shared
# encoder (stem to bottleneck) and the heads (both decoders and the weight head).
ENCODER_MODULES = ("stem", "enc", "down", "bottleneck")
HEAD_MODULES = ("dec_a", "dec_b", "weight_head")


class UNetConfig(StrictModel):
    """Architecture; stored in every checkpoint so it can be rebuilt."""

    stem_factor: int = 4  # space-to-depth factor of the stem (1/4 resolution for the first level)
    widths: tuple[int, ...] = (24, 48, 64, 96)  # per level; each next level halves the size
    blocks_per_level: int = 1  # encoder ResBlocks per level
    decoder_block: str = "conv"  # "conv" (one conv-BN-SiLU, fast) or "res" (a ResBlock)
    bottleneck_blocks: int = 1
    head_channels: int = 4  # full-resolution channels in each output head
    # Channels the decoder hands to full resolution (PixelShuffle of s*s*k); the first is the coarse
    # output itself. 1 = a linear 4x4 readout of the finest level, blind to fine Kikuchi lines.
    full_res_channels: int = Field(default=1, ge=1)
    refine_layers: int = Field(default=1, ge=1)  # 3x3 conv layers of the full-resolution head
    weight_hidden: int = 32
    # Slow BatchNorm statistics: consecutive batches come from one store (one pattern size), so
    # the default 0.1 would leave eval statistics of whichever size was seen last.
    bn_momentum: float = 0.01
    # Levels (0 = first, len(widths)-1 = bottleneck) followed by a global self-attention block:
    # Kikuchi bands cross the whole pattern, so one crystal's bands are told from the other's by
    # their long-range alignment, which small convolutions see only at the coarsest level.
    global_levels: tuple[int, ...] = ()
    global_heads: int = 4

    @property
    def multiple(self) -> int:
        """Input sides are padded to a multiple of this."""
        return self.stem_factor * 2 ** (len(self.widths) - 1)
