"""A tiny deterministic stand-in for kdeconv.model.Separator (known answers, no torch).

A = the input, B = its mirror image, weights from the pattern mean: wB = 0.5 * mean(input).
"""

import numpy as np


class StubSeparator:
    sha256 = "0" * 64
    calls = 0

    def separate(self, patterns):
        StubSeparator.calls += 1
        patterns = np.asarray(patterns, dtype=np.float32)
        if patterns.shape[-2:] == (17, 17):
            raise RuntimeError("stub cannot take 17x17 patterns")
        a = patterns.copy()
        b = patterns[:, :, ::-1].copy()
        wb = 0.5 * patterns.mean(axis=(1, 2))
        return a, b, np.stack([1 - wb, wb], axis=1).astype(np.float32)


def load_stub(checkpoint, device="cpu"):
    return StubSeparator()
