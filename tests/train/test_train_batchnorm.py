"""BatchNorm recalibration: running statistics become the statistics of the calibration data."""

import numpy as np
import torch

from kdeconv.model import DualDecoderUNet, UNetConfig
from kdeconv.train.data import Batch
from kdeconv.train.driver import recalibrate_batchnorm


def test_recalibrated_stats_match_the_data():
    torch.manual_seed(0)
    model = DualDecoderUNet(UNetConfig(widths=(8, 16), head_channels=2, weight_hidden=4))
    x = np.random.default_rng(0).random((6, 32, 32)).astype(np.float32)
    batch = Batch(x, x, x, np.full(6, 0.6, np.float32), np.zeros(6, bool))
    stem_bn = model.stem[1][1]
    stem_bn.running_mean.fill_(5.0)  # stale statistics
    recalibrate_batchnorm(model, [batch], batch_size=6, device=torch.device("cpu"))
    with torch.no_grad():
        feats = model.stem[1][0](model.stem[0](torch.from_numpy(x)[:, None]))
    torch.testing.assert_close(stem_bn.running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-4)
    assert stem_bn.momentum == 0.01  # restored
