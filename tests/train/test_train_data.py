"""Streaming data: whole-chunk reads, every train pair once per pass, deterministic resume."""

import itertools

import numpy as np

from kdeconv.model.inputs import DEFAULT_NORMALIZATION
from kdeconv.train.data import TrainStream, augment_flips, load_validation, open_sources


def _stream(tiny_pairs, flips=False, batch=8):
    sources = open_sources([tiny_pairs], val_fraction=0.1, val_max=100)
    return sources, TrainStream(sources, batch, seed=5, normalization=DEFAULT_NORMALIZATION, flips=flips)


def test_split_and_one_pass_covers_train_once(tiny_pairs):
    sources, stream = _stream(tiny_pairs)
    s = sources[0]
    assert (s.n, s.n_train, s.n_val, s.chunk) == (96, 86, 10, 32)
    # Identify pairs by their weight (unique floats) and compare with the store's train split.
    w_all = np.asarray(s.group["weights"][:, 0])
    seen = []
    for pass_, _index, batch in itertools.islice(stream.batches(), stream.batches_per_pass):
        assert pass_ == 0
        seen.extend(batch.w_a.tolist())
    assert sorted(seen) == sorted(w_all[:86].tolist())
    val = load_validation(sources, DEFAULT_NORMALIZATION)
    assert sorted(val[0].w_a.tolist()) == sorted(w_all[86:].tolist())


def test_resume_position_gives_the_same_batches(tiny_pairs):
    _, stream = _stream(tiny_pairs, flips=True)
    full = list(itertools.islice(stream.batches(), 20))  # crosses into the second pass
    p, k, _ = full[7]
    resumed = list(itertools.islice(stream.batches(p, k + 1), 12))
    for (p1, k1, b1), (p2, k2, b2) in zip(full[8:], resumed):
        assert (p1, k1) == (p2, k2)
        np.testing.assert_array_equal(b1.c, b2.c)
        np.testing.assert_array_equal(b1.a, b2.a)
        np.testing.assert_array_equal(b1.w_a, b2.w_a)
    assert full[-1][0] == 1  # second pass started


def test_inputs_and_targets_in_unit_range(tiny_pairs):
    _, stream = _stream(tiny_pairs)
    _, _, batch = next(stream.batches())
    for arr in (batch.c, batch.a, batch.b):
        assert arr.dtype == np.float32 and arr.min() >= 0 and arr.max() <= 1


def test_flips_are_identical_on_c_a_b():
    from kdeconv.train.data import Batch

    rng = np.random.default_rng(0)
    x = rng.random((6, 5, 5)).astype(np.float32)
    batch = Batch(x, x.copy(), x.copy(), np.zeros(6, np.float32), np.zeros(6, bool))
    out = augment_flips(batch, np.random.default_rng(1))
    np.testing.assert_array_equal(out.c, out.a)
    np.testing.assert_array_equal(out.c, out.b)
    assert not np.array_equal(out.c, x)
    np.testing.assert_allclose(np.sort(out.c.ravel()), np.sort(x.ravel()))
