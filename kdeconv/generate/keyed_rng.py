"""Keyed random streams for many keys at once, bit for bit those of ``np.random.default_rng``.

``generate`` draws every number of pair ``i`` from ``np.random.default_rng([seed, i, stream])``,
so nothing depends on chunking or workers. Building one Generator per pair costs ~25 us (the
SeedSequence hash and the PCG64 set-up), more than the draws. ``keyed_uniforms`` runs the same
two algorithms (numpy's SeedSequence and PCG64 XSL-RR 128/64) on arrays of keys, so a chunk of
pairs gets its draws in a few vector operations and identical bytes (tested against numpy).
"""

from __future__ import annotations

import numpy as np

__all__ = ["keyed_uniforms", "seed_words"]

# numpy/random/bit_generator.pyx (SeedSequence)
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_MASK32 = 0xFFFFFFFF
_POOL = 4
# numpy/random/src/pcg64 (PCG_DEFAULT_MULTIPLIER_128)
_PCG_MULT_HI, _PCG_MULT_LO = 2549297995355413924, 4865540595714422341


def seed_words(value: int) -> list[int]:
    """An int as SeedSequence reads it: 32-bit words, least significant first (0 is one word)."""
    if value < 0:
        raise ValueError("seeds must be non-negative")
    words = [value & _MASK32]
    value >>= 32
    while value:
        words.append(value & _MASK32)
        value >>= 32
    return words


def _hash_consts(start: int, mult: int, count: int) -> list[np.uint32]:
    """The multiplier sequence of the hash (it depends on the call count only, not the data)."""
    out, h = [], start
    for _ in range(count):
        out.append((np.uint32(h), np.uint32((h * mult) & _MASK32)))
        h = (h * mult) & _MASK32
    return out


def _hashmix(value: np.ndarray, consts) -> np.ndarray:
    xor, mult = consts
    value = (value ^ xor) * mult
    return value ^ (value >> np.uint32(16))


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result = np.uint32(_MIX_L) * x - np.uint32(_MIX_R) * y
    return result ^ (result >> np.uint32(16))


def _pool(entropy: list[np.ndarray]) -> list[np.ndarray]:
    """SeedSequence.mix_entropy on uint32 word arrays (one array per entropy word)."""
    n_words = len(entropy)
    calls = _POOL + _POOL * (_POOL - 1) + max(0, n_words - _POOL) * _POOL
    consts = iter(_hash_consts(_INIT_A, _MULT_A, calls))
    zero = np.zeros_like(entropy[0])
    mixer = [_hashmix(entropy[i] if i < n_words else zero, next(consts)) for i in range(_POOL)]
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                mixer[dst] = _mix(mixer[dst], _hashmix(mixer[src], next(consts)))
    for src in range(_POOL, n_words):
        for dst in range(_POOL):
            mixer[dst] = _mix(mixer[dst], _hashmix(entropy[src], next(consts)))
    return mixer


def _state_words(pool: list[np.ndarray]) -> list[np.ndarray]:
    """SeedSequence.generate_state(4, uint64) as four uint64 arrays."""
    out32 = []
    for k, (xor, mult) in enumerate(_hash_consts(_INIT_B, _MULT_B, 8)):
        value = (pool[k % _POOL] ^ xor) * mult
        out32.append(value ^ (value >> np.uint32(16)))
    return [out32[2 * k].astype(np.uint64) | (out32[2 * k + 1].astype(np.uint64) << np.uint64(32))
            for k in range(4)]


_M32 = np.uint64(_MASK32)
_S32 = np.uint64(32)


def _mulhi(a: np.ndarray, b: int) -> np.ndarray:
    """High 64 bits of the 128-bit product of uint64 ``a`` and the constant ``b``."""
    a0, a1 = a & _M32, a >> _S32
    b0, b1 = np.uint64(b & _MASK32), np.uint64(b >> 32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> _S32) + (p01 & _M32) + (p10 & _M32)
    return p11 + (p01 >> _S32) + (p10 >> _S32) + (mid >> _S32)


def _step(hi, lo, inc_hi, inc_lo):
    """state = state * MULT + inc (mod 2**128) on (hi, lo) uint64 arrays."""
    new_hi = hi * np.uint64(_PCG_MULT_LO) + lo * np.uint64(_PCG_MULT_HI) + _mulhi(lo, _PCG_MULT_LO)
    new_lo = lo * np.uint64(_PCG_MULT_LO)
    return _add(new_hi, new_lo, inc_hi, inc_lo)


def _add(hi, lo, add_hi, add_lo):
    out_lo = lo + add_lo
    return hi + add_hi + (out_lo < lo).astype(np.uint64), out_lo


def keyed_uniforms(seed: int, keys: np.ndarray, stream: int, count: int) -> np.ndarray:
    """``(len(keys), count)`` float64: row k equals
    ``np.random.default_rng([seed, keys[k], stream]).random(count)``."""
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    if keys.size and (keys.min() < 0 or keys.max() > _MASK32):
        raise ValueError("keys must lie in [0, 2**32)")  # one seed word per key, as below
    n = keys.size
    words = ([np.full(n, w, np.uint32) for w in seed_words(int(seed))] + [keys.astype(np.uint32)]
             + [np.full(n, w, np.uint32) for w in seed_words(int(stream))])
    with np.errstate(over="ignore"):
        s_hi, s_lo, i_hi, i_lo = _state_words(_pool(words))
        # pcg_setseq_128_srandom_r: inc = (initseq << 1) | 1; state = inc; state += initstate; step
        inc_hi = (i_hi << np.uint64(1)) | (i_lo >> np.uint64(63))
        inc_lo = (i_lo << np.uint64(1)) | np.uint64(1)
        hi, lo = _add(inc_hi, inc_lo, s_hi, s_lo)
        hi, lo = _step(hi, lo, inc_hi, inc_lo)
        out = np.empty((n, count), np.float64)
        for k in range(count):
            hi, lo = _step(hi, lo, inc_hi, inc_lo)
            mixed = hi ^ lo
            rot = hi >> np.uint64(58)
            value = (mixed >> rot) | (mixed << ((np.uint64(64) - rot) & np.uint64(63)))
            out[:, k] = (value >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    return out
