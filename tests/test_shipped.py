"""The models that come with the toolkit (``toolkit/data``, ``toolkit.cache.SHIPPED``) are the ones
the code trains: the default configuration's base model and its chat model fine-tuned with the
baseline's mask. Their names are the keys the pipeline looks for, and training afresh retraces the
first steps of their loss curves. After a change that breaks either, ``python -m toolkit.pipeline``
trains them again (about three minutes)."""

from __future__ import annotations

import pytest
import torch

from toolkit.cache import SHIPPED, code_digest
from toolkit.pipeline import Pipeline
from toolkit.train import pretrain, sft

PRETRAIN_STEPS = 40  # past the warm-up (30 steps), into the cosine decay
SFT_STEPS = 15  # past the warm-up (5 steps)


class _Stop(Exception):
    pass


def first_losses(train, steps: int) -> list[float]:
    """The losses of the first ``steps`` steps of ``train(on_step)``, which is then stopped."""
    losses = []

    def on_step(step, loss):
        losses.append(loss)
        if len(losses) == steps:
            raise _Stop

    with pytest.raises(_Stop):
        train(on_step)
    return losses


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return Pipeline(cache_dir=tmp_path_factory.mktemp("cache"), log=lambda m: None)


def shipped(name: str) -> dict:
    return torch.load(SHIPPED / name, weights_only=True)


def test_the_shipped_models_are_the_default_configurations(pipeline):
    names = sorted(p.name for p in SHIPPED.glob("*.pt"))
    want = [f"base-{pipeline.base_key()}.pt", f"sft-{pipeline.chat_key()}.pt"]
    assert names == want, f"toolkit/data holds {names}, not {want}: run python -m toolkit.pipeline"
    logs = []
    loaded = Pipeline(cache_dir=pipeline.cache_dir, log=logs.append)
    loaded.chat_model
    assert logs == [f"pretrain: loaded shipped with the toolkit {SHIPPED / want[0]}",
                    f"sft: loaded shipped with the toolkit {SHIPPED / want[1]}"]
    assert not list(pipeline.cache_dir.glob("base-*")) + list(pipeline.cache_dir.glob("sft-*"))  # nothing trained
    assert loaded.val_loss(loaded.base_model) < 0.6  # trained (the seed sweep's base models: 0.51 to 0.56)


def test_pretraining_afresh_retraces_the_shipped_curve(pipeline):
    """The first steps of the default configuration's pretraining, run here, against the shipped
    model's curve. Another CPU rounds differently, hence the tolerance; a change to the data, the
    model, its initialisation, the schedule or the loop moves the losses by far more."""
    want = shipped(f"base-{pipeline.base_key()}.pt")["curve"]
    model = pipeline.new_model()
    got = first_losses(lambda on_step: pretrain(model, pipeline.train_stream, pipeline.config.pretrain, on_step),
                       PRETRAIN_STEPS)
    assert got == pytest.approx(want[:PRETRAIN_STEPS], abs=1e-3)
    assert len(want) == pipeline.config.pretrain.steps


def test_fine_tuning_the_shipped_base_retraces_the_shipped_chat_curve(pipeline):
    want = shipped(f"sft-{pipeline.chat_key()}.pt")["curve"]
    model = pipeline.new_model()
    model.load_state_dict(shipped(f"base-{pipeline.base_key()}.pt")["model"])
    tokens, mask = pipeline.sft_data
    got = first_losses(lambda on_step: sft(model, tokens, mask, pipeline.config.sft, replay=pipeline.train_stream,
                                           on_step=on_step), SFT_STEPS)
    assert got == pytest.approx(want[:SFT_STEPS], abs=1e-3)
    assert len(want) == pipeline.config.sft.steps


def test_the_keys_hash_what_the_code_does_not_its_comments(tmp_path, monkeypatch):
    """``code_digest``: a comment or a docstring edited keeps every cached model (and the shipped ones);
    a changed line of code does not."""
    import importlib
    import sys

    def digest(source: str) -> bytes:
        path = tmp_path / f"mod{len(list(tmp_path.iterdir()))}.py"
        path.write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        module = importlib.import_module(path.stem)
        sys.modules.pop(path.stem)
        return code_digest(module.lr)

    plain = digest("def lr(step):\n    return 0.1 * step\n")
    assert digest('def lr(step):\n    """The rate."""\n    # linear\n    return 0.1 * step  # up\n') == plain
    assert digest("def lr(step):\n    return 0.11 * step\n") != plain
