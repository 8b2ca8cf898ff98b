"""Fine-tuning: start from a checkpoint's weights (model and normalisation come with them),
frozen modules, a head learning-rate scale, and a separate validation set."""

import pytest
import torch
import yaml
from train_configs import assert_same_weights, small_config

from kdeconv.config.train import TrainConfig
from kdeconv.errors import InputError
from kdeconv.model import DEFAULT_CHECKPOINT, file_sha256, load_separator, read_checkpoint
from kdeconv.model.precision import autocast
from kdeconv.train import Trainer, run
from kdeconv.train.data import load_validation, open_sources, open_validation_sources
from kdeconv.train.run_config import coerce_config, resolve_init
from kdeconv.train.validation import evaluate_batches

MINMAX = {"method": "minmax", "percentiles": [0.5, 99.5], "mask": "auto"}


def _quiet(**kw):
    return dict(progress=False, echo=lambda line: None, **kw)


def _without_model(**changes):
    cfg = small_config(**changes)
    del cfg["model"]
    return cfg


@pytest.fixture(scope="module")
def base(tiny_pairs, tmp_path_factory):
    """A trained checkpoint with a non-default normalisation recipe."""
    out = tmp_path_factory.mktemp("base") / "run"
    return run(small_config(max_steps=2, normalization=MINMAX), data=[tiny_pairs], out=out,
               **_quiet()).last


def test_weights_at_step_0_are_the_checkpoints(base, tiny_pairs, tmp_path):
    cfg, ckpt = resolve_init(coerce_config(_without_model(init_checkpoint=str(base))))
    assert cfg.model.model_dump(mode="json") == ckpt["model_config"]
    assert cfg.normalization.model_dump(mode="json") == MINMAX  # the checkpoint's recipe is kept
    assert cfg.init_checkpoint_sha256 == file_sha256(base)
    sources = open_sources([tiny_pairs], cfg.val_fraction, cfg.val_max)
    trainer = Trainer(cfg, sources, sources, tmp_path, echo=lambda line: None)
    trainer.start_from(ckpt, base)
    assert_same_weights(trainer.model.state_dict(), ckpt["state_dict"])  # BatchNorm statistics too
    assert trainer.state["step"] == 0 and not trainer.optimizer.state  # optimiser starts fresh


def test_fine_tune_run_records_its_start(base, tiny_pairs, tmp_path):
    lines = []
    result = run(_without_model(init_checkpoint=str(base), max_steps=2), data=[tiny_pairs],
                 out=tmp_path / "ft", progress=False, echo=lines.append)
    last = read_checkpoint(result.last)
    assert last["train_config"]["init_checkpoint"] == str(base)
    assert last["train_config"]["init_checkpoint_sha256"] == file_sha256(base)
    assert last["model_config"] == read_checkpoint(base)["model_config"]
    assert last["normalization"] == MINMAX
    assert last["training_state"]["step"] == 2
    assert any("starting from the weights of" in line for line in lines)
    # the same model section as the checkpoint's is accepted; a pinned sha256 must match
    run(small_config(init_checkpoint=str(base), max_steps=1), data=[tiny_pairs], out=tmp_path / "same",
        **_quiet())
    with pytest.raises(InputError, match="sha256"):
        run(_without_model(init_checkpoint=str(base), init_checkpoint_sha256="0" * 64),
            data=[tiny_pairs], out=tmp_path / "pinned", **_quiet())


def test_model_mismatch_is_exit_2(base, tiny_pairs, cli, tmp_path):
    config = tmp_path / "ft.yaml"
    config.write_text(yaml.safe_dump(small_config(model={"widths": [8, 16]}, init_checkpoint=str(base))))
    r = cli("train", "--config", config, "--data", tiny_pairs, "--out", tmp_path / "run")
    assert r.exit_code == 2, r.output
    assert "model section differs from init_checkpoint" in r.output and "widths" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    # the same through --init-checkpoint, and a differing normalisation
    config.write_text(yaml.safe_dump(small_config(normalization={"method": "percentile"})))
    r = cli("train", "--config", config, "--data", tiny_pairs, "--out", tmp_path / "run",
            "--init-checkpoint", base)
    assert r.exit_code == 2 and "normalization section differs" in r.output and "method" in r.output


def test_default_means_the_shipped_model(tiny_pairs):
    cfg, ckpt = resolve_init(TrainConfig(init_checkpoint="default"))
    assert cfg.init_checkpoint_sha256 == file_sha256(DEFAULT_CHECKPOINT)
    assert cfg.model.model_dump(mode="json") == ckpt["model_config"]
    assert load_separator(None, device="cpu").meta["model_config"] == ckpt["model_config"]
    with pytest.raises(InputError, match="model section differs from init_checkpoint"):
        resolve_init(coerce_config(small_config(init_checkpoint="default")))


def test_freeze_and_head_lr_scale(base, tiny_pairs, tmp_path):
    encoder = ["stem", "enc", "down", "bottleneck"]
    result = run(_without_model(init_checkpoint=str(base), freeze=encoder, max_steps=2),
                 data=[tiny_pairs], out=tmp_path / "frozen", **_quiet())
    before, after = read_checkpoint(base)["state_dict"], read_checkpoint(result.last)["state_dict"]
    names = [n for n, _ in load_separator(base, device="cpu").model.named_parameters()]
    for name in names:
        frozen = name.split(".")[0] in encoder
        assert torch.equal(before[name], after[name]) == frozen, name
    # head_lr_scale: the decoders and the weight head learn at that multiple of the schedule's rate
    cfg = TrainConfig.model_validate(small_config(head_lr_scale=0.25))
    sources = open_sources([tiny_pairs], cfg.val_fraction, cfg.val_max)
    trainer = Trainer(cfg, sources, sources, tmp_path / "scaled", echo=lambda line: None)
    body, head = trainer.optimizer.param_groups
    named = dict(trainer.model.named_parameters())
    head_names = {n for n, p in named.items() if any(p is q for q in head["params"])}
    assert head_names == {n for n in named if n.split(".")[0] in ("dec_a", "dec_b", "weight_head")}
    assert len(body["params"]) + len(head["params"]) == len(named)
    lr = trainer.schedule.set(5, 0.0)
    assert (body["lr"], head["lr"]) == (lr, 0.25 * lr)


def test_unknown_freeze_prefix(base, tiny_pairs, tmp_path):
    with pytest.raises(InputError, match="no parameters under 'enc.9'"):
        run(_without_model(init_checkpoint=str(base), freeze=["enc.9"]), data=[tiny_pairs],
            out=tmp_path / "x", **_quiet())
    assert not (tmp_path / "x").exists()
    with pytest.raises(InputError, match="freeze.*'encoder' is not under a module"):
        coerce_config(small_config(freeze=["encoder"]))


def test_separate_validation_stores(tiny_pairs, tiny_val_pairs, tmp_path):
    result = run(small_config(val_data=[str(tiny_val_pairs)]), data=[tiny_pairs],
                 out=tmp_path / "run", **_quiet())
    last = read_checkpoint(result.last)
    assert (last["data"]["n_train"], last["data"]["n_val"]) == (96, 40)  # no tail held out
    assert [s["n_val"] for s in last["data"]["stores"]] == [0]
    assert [s["path"] for s in last["data"]["val_stores"]] == [str(tiny_val_pairs)]
    # the reported validation is the saved model on the validation store
    cfg = TrainConfig.model_validate(last["train_config"])
    model = load_separator(result.last, device="cpu").model
    val = load_validation(open_validation_sources([tiny_val_pairs]), last["normalization"])
    cpu = torch.device("cpu")
    metrics = evaluate_batches(model, val, cfg, cpu, lambda: autocast(cpu, None))
    assert metrics == pytest.approx(result.val_metrics, rel=1e-5)
    with pytest.raises(InputError, match="both training data and val_data"):
        run(small_config(val_data=[str(tiny_pairs)]), data=[tiny_pairs], out=tmp_path / "x", **_quiet())
    # it resumes with its validation stores
    resumed = run({"max_steps": 5}, out=tmp_path / "run", resume=True, **_quiet())
    assert resumed.steps == 5
