"""The trainer in pieces and ``kdeconv.train.run`` with dict and YAML configs: results, exact
repeatability, resume, divergence (no non-finite weights are ever saved)."""

import csv
import hashlib

import pytest
import torch
import yaml
from train_configs import assert_same_weights, small_config, weights_sha256

from kdeconv.config.train import TrainConfig
from kdeconv.errors import InputError
from kdeconv.model import build_model, read_checkpoint
from kdeconv.train import Trainer, TrainingDiverged, TrainResult, run
from kdeconv.train.data import open_sources
from kdeconv.train.metrics_log import CSV_FIELDS, MetricsLog


def _quiet(**kw):
    return dict(progress=False, echo=lambda line: None, **kw)


@pytest.fixture(scope="module")
def dict_run(tiny_pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "dict"
    return run(small_config(), data=[tiny_pairs], out=out, **_quiet())


def test_run_with_a_dict_config(dict_run):
    result = dict_run
    assert isinstance(result, TrainResult)
    assert (result.steps, result.stop_reason) == (4, "max_steps") and result.best_step in (2, 4)
    assert result.best == result.out / "best.pt" and result.last == result.out / "last.pt"
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png", "config.yaml", "summary.json"):
        assert (result.out / name).is_file(), name
    last = read_checkpoint(result.last)
    assert last["training_state"]["step"] == 4
    assert last["metrics"]["val_loss"] == result.val_metrics["loss"]
    assert set(result.val_metrics) == {"loss", "weight_mae", "ncc_a", "ncc_b", "ncc_median"}
    assert result.best_val_loss == read_checkpoint(result.best)["metrics"]["val_loss"]
    assert result.seconds > 0
    # the run folder's config.yaml is the validated config
    assert TrainConfig.model_validate(yaml.safe_load((result.out / "config.yaml").read_text())) \
        == TrainConfig.model_validate(small_config())
    rows = list(csv.DictReader((result.out / "metrics.csv").open()))
    assert [(int(r["step"]), r["kind"]) for r in rows] == [
        (1, "train"), (2, "train"), (2, "val"), (3, "train"), (4, "train"), (4, "val")]


def test_yaml_path_gives_identical_weights(dict_run, tiny_pairs, tmp_path):
    # The same config as a YAML file, trained again: bit-identical weights and checkpoints' state.
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small_config()))
    result = run(path, data=[tiny_pairs], out=tmp_path / "yaml", **_quiet())
    for name in ("last.pt", "best.pt"):
        a, b = read_checkpoint(dict_run.out / name), read_checkpoint(result.out / name)
        assert weights_sha256(a["state_dict"]) == weights_sha256(b["state_dict"]), name
        assert a["train_config"] == b["train_config"]
    assert result.val_metrics == dict_run.val_metrics


def test_half_and_resume_equals_straight(tiny_pairs, tmp_path):
    # 2 steps + resume to 4 == 4 steps straight (data order, RNG, optimiser). Constant LR after
    # warm-up, because the cosine is stretched over the budget by design.
    cfg = small_config(min_lr_ratio=1.0)
    straight = run(cfg, data=[tiny_pairs], out=tmp_path / "straight", **_quiet())
    run({**cfg, "max_steps": 2}, data=[tiny_pairs], out=tmp_path / "halves", **_quiet())
    resumed = run({"max_steps": 4}, out=tmp_path / "halves", resume=True, **_quiet())
    assert resumed.steps == 4
    assert_same_weights(read_checkpoint(straight.last)["state_dict"],
                        read_checkpoint(resumed.last)["state_dict"])


def test_resume_config_rules(dict_run, tiny_pairs, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(dict_run.out, out)
    with pytest.raises(InputError, match="differs from the run being resumed in: lr"):
        run(small_config(lr=0.1, max_steps=5), out=out, resume=True, **_quiet())
    with pytest.raises(InputError, match="nothing to resume"):
        run(None, out=tmp_path / "none", resume=True, **_quiet())
    with pytest.raises(InputError, match="config is required"):
        run(None, data=[tiny_pairs], out=tmp_path / "new", **_quiet())
    # a full config that only changes budget keys continues the run
    result = run(small_config(max_steps=5, early_stop_patience=3), out=out, resume=True, **_quiet())
    assert result.steps == 5
    assert read_checkpoint(out / "last.pt")["train_config"]["early_stop_patience"] == 3


def test_trainer_pieces(tiny_pairs, tmp_path):
    cfg = TrainConfig.model_validate(small_config())
    sources = open_sources([tiny_pairs], cfg.val_fraction, cfg.val_max)
    trainer = Trainer(cfg, sources, sources, tmp_path, echo=lambda line: None)
    assert trainer.steps_per_epoch == 2 and trainer.state["step"] == 0
    assert "from step 0 to at most 4" in trainer.describe()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    _, _, batch = next(trainer.stream.batches())
    lr, parts = trainer.step(batch)
    assert trainer.state["step"] == 1 and lr == pytest.approx(0.003 / 2, rel=0.01)  # warm-up 1 of 2
    assert set(parts) == {"loss", "separation", "weight_mae"} and parts["loss"] > 0
    assert not torch.equal(before["stem.1.0.weight"], trainer.model.state_dict()["stem.1.0.weight"])
    metrics = trainer.evaluate()
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    log = MetricsLog(tmp_path, 0, log_every=1, batch_size=4)
    log.add_train(1, 0, 0.5, lr, parts)
    metrics, improved = trainer.evaluate_and_checkpoint(lr, log)
    log.close()
    assert improved and trainer.state["best_step"] == 1
    assert read_checkpoint(tmp_path / "last.pt")["training_state"]["step"] == 1
    assert "training_state" not in read_checkpoint(tmp_path / "best.pt")
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert list(rows[0]) == CSV_FIELDS and [r["kind"] for r in rows] == ["train", "val"]
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_non_finite_weights_are_never_saved(tiny_pairs, tmp_path):
    cfg = TrainConfig.model_validate(small_config())
    sources = open_sources([tiny_pairs], cfg.val_fraction, cfg.val_max)
    trainer = Trainer(cfg, sources, sources, tmp_path, echo=lambda line: None)
    batches = trainer.stream.batches()
    lr, _ = trainer.step(next(batches)[2])
    trainer.save("last.pt", {})
    good = hashlib.sha256((tmp_path / "last.pt").read_bytes()).hexdigest()
    with torch.no_grad():
        trainer.model.weight_head[0].weight[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"non-finite weights at step 1 in weight_head\.0\.weight"):
        trainer.save("best.pt", {})
    log = MetricsLog(tmp_path, 1, log_every=1, batch_size=4)
    with pytest.raises(TrainingDiverged) as err:
        trainer.evaluate_and_checkpoint(lr, log)
    log.close()
    message = str(err.value)
    assert "lower lr (now 0.003)" in message and f"{tmp_path / 'last.pt'} (step 1" in message
    assert not (tmp_path / "best.pt").exists()
    assert hashlib.sha256((tmp_path / "last.pt").read_bytes()).hexdigest() == good
    # a NaN loss stops at once (RuntimeError, as before), naming the step
    with pytest.raises(RuntimeError, match="training diverged at step 1 .loss nan.: lower lr"):
        trainer.step(next(batches)[2])


def test_same_parameters_as_a_plain_loop(dict_run, tiny_pairs):
    # The trainer adds nothing to the optimisation itself: a bare loop over the same batches
    # (seeded model, AdamW, schedule, PIT loss, clipping) ends with the same parameters.
    import random

    import numpy as np

    from kdeconv.model import build_model
    from kdeconv.train.data import TrainStream
    from kdeconv.train.loss import pit_loss
    from kdeconv.train.schedule import WarmupCosine
    from kdeconv.train.validation import to_tensors

    cfg = TrainConfig.model_validate(small_config())
    cpu = torch.device("cpu")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model = build_model(cfg.model).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = WarmupCosine(opt, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
    sources = open_sources([tiny_pairs], cfg.val_fraction, cfg.val_max)
    batches = TrainStream(sources, 4, 0, cfg.normalization.model_dump(mode="json"), True).batches()
    model.train()
    for step in range(cfg.max_steps):
        c, a, b, w = to_tensors(next(batches)[2], cpu)
        schedule.set(step, step / cfg.max_steps)
        loss, _ = pit_loss(*model(c), a, b, w, c, **cfg.loss.model_dump())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    batches.close()
    saved = read_checkpoint(dict_run.last)["state_dict"]
    for name, param in model.named_parameters():
        assert torch.equal(param.detach(), saved[name]), name


def test_runs_saved_without_the_fine_tuning_keys_resume(dict_run, tmp_path):
    # last.pt files written before init_checkpoint/freeze/head_lr_scale/val_data existed
    import shutil

    from kdeconv.model.checkpoint import _write_atomic

    out = tmp_path / "run"
    shutil.copytree(dict_run.out, out)
    ckpt = read_checkpoint(out / "last.pt")
    for key in ("init_checkpoint", "init_checkpoint_sha256", "freeze", "head_lr_scale", "val_data"):
        del ckpt["train_config"][key]
    _write_atomic(out / "last.pt", ckpt)
    same = tmp_path / "same"
    shutil.copytree(dict_run.out, same)
    a = run({"max_steps": 5}, out=out, resume=True, **_quiet())
    b = run({"max_steps": 5}, out=same, resume=True, **_quiet())
    assert a.steps == b.steps == 5
    assert_same_weights(read_checkpoint(a.last)["state_dict"], read_checkpoint(b.last)["state_dict"])


def test_resuming_a_finished_run_reports_its_last_validation(dict_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(dict_run.out, out)
    result = run(None, out=out, resume=True, **_quiet())
    assert (result.steps, result.stop_reason) == (4, "max_steps")
    assert result.val_metrics == dict_run.val_metrics


def test_ema_saves_the_average_of_the_trained_weights(tiny_pairs, tmp_path):
    # Known answer: the raw weights after 1..4 steps (runs of that many steps; constant lr, so the
    # schedule does not depend on the budget) averaged by hand, e_1 = w_1, e_k = d e_(k-1) + (1-d) w_k.
    decay = 0.6
    cfg = small_config(min_lr_ratio=1.0, steps_per_epoch=4)
    raw = [read_checkpoint(run({**cfg, "max_steps": k}, data=[tiny_pairs], out=tmp_path / f"raw{k}",
                               **_quiet()).last)["state_dict"] for k in (1, 2, 3, 4)]
    averaged = run({**cfg, "ema_decay": decay}, data=[tiny_pairs], out=tmp_path / "ema", **_quiet())
    last, best = read_checkpoint(averaged.last), read_checkpoint(averaged.best)
    names = [name for name, _ in build_model(TrainConfig.model_validate(cfg).model).named_parameters()]
    # training itself is unchanged: the raw weights kept for resuming are the plain run's
    # (BatchNorm statistics are recalibrated for the weights saved, so parameters only)
    for name in names:
        assert torch.equal(last["training_state"]["raw_state_dict"][name], raw[3][name]), name
    expected = {name: raw[0][name].clone() for name in raw[0] if raw[0][name].is_floating_point()}
    for weights in raw[1:]:
        for name in expected:
            expected[name] = decay * expected[name] + (1 - decay) * weights[name]
    for name in names:
        torch.testing.assert_close(last["state_dict"][name], expected[name], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(best["state_dict"][name], last["state_dict"][name])
    assert any(not torch.equal(last["state_dict"][name], raw[3][name]) for name in names)


def test_ema_run_resumes_to_the_straight_run(tiny_pairs, tmp_path):
    cfg = small_config(min_lr_ratio=1.0, ema_decay=0.6)
    straight = run(cfg, data=[tiny_pairs], out=tmp_path / "straight", **_quiet())
    run({**cfg, "max_steps": 2}, data=[tiny_pairs], out=tmp_path / "halves", **_quiet())
    resumed = run({"max_steps": 4}, out=tmp_path / "halves", resume=True, **_quiet())
    a, b = read_checkpoint(straight.last), read_checkpoint(resumed.last)
    assert_same_weights(a["state_dict"], b["state_dict"])
    assert_same_weights(a["training_state"]["raw_state_dict"], b["training_state"]["raw_state_dict"])
    # a run saved with the average cannot go on without it, nor the other way round
    with pytest.raises(InputError, match="ema_decay"):
        run({"max_steps": 6, "ema_decay": None}, out=tmp_path / "halves", resume=True, **_quiet())
