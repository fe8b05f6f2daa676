"""The reference GPT pipeline: world -> tokenizer -> base model -> chat model -> probe.

Every stage takes its components from a ``Components`` object, so a student's plugin
can be swapped in anywhere. The stages are declared once (``STAGES``), each a cached attribute
of ``Pipeline``: its data comes from ``toolkit.data_stages``, its settings from ``toolkit.config``.
The models that take long to train are cached on disk (``toolkit.cache``) under a key that hashes
everything they depend on: the base model, the chat model, and the reward model when its code is
known in full (the instructor's). All randomness is seeded, and the number of torch threads is
pinned, so a run gives the same numbers every time on one machine.
"""

from __future__ import annotations

import copy
import inspect
import json
import time
from dataclasses import asdict
from functools import cached_property
from pathlib import Path

import torch

from toolkit import cache, rlhf
from toolkit.cache import SHIPPED, code_digest, default_cache_dir
from toolkit.components import COMPONENTS
from toolkit.config import PipelineConfig
from toolkit.data_stages import BASE_DATA, DataStages
from toolkit.model import GPT, MLP, Block, GPTConfig, reference_block
from toolkit.plugins import Components, PluginError
from toolkit.train import (TrainConfig, adamw, by_length, cross_entropy, fit, lr_at, masked_loss_sum, next_token_loss,
                           pretrain, reach, sft, stream_batch)

PIPELINE_VERSION = 1  # bump when a change to code that no key hashes (``code_digest``) changes what a stage produces

STAGES = ("tokenizer", "stream", "base_model", "chat_model", "reward_model", "rlhf_model")
"""The pipeline's stages, in order: what takes time to build (the tokenizer trained, the corpus encoded, each
model trained), each a cached attribute of ``Pipeline``. ``Component.stages`` names those whose building
calls a component's hooks; the class grader builds every one itself (``toolkit.grading.child_pipeline``)."""
USES = {stage: {c.name for c in COMPONENTS.values() if stage in c.stages} for stage in STAGES}
"""Stage -> the components whose hooks building it calls (its earlier stages' included): read from
``Component.stages``. Under the class grader, a model built with a submission's hooks is not cached."""


def seed_everything(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


PRETRAINING_CODE = (GPTConfig, MLP, Block, reference_block, GPT, TrainConfig, adamw, cross_entropy, lr_at, fit,
                    stream_batch, next_token_loss, pretrain, seed_everything)
"""What pretraining runs, but the components' code (``components_code``): its digest (``code_digest``) is
part of the base model's key."""
SFT_CODE = (sft, masked_loss_sum, reach, by_length)
"""What SFT runs beyond pretraining's code: its digest is part of the chat model's key."""


def components_code(components: Components, config: GPTConfig) -> tuple:
    """The components' code pretraining runs, as ``code_digest`` reads it: the classes of the modules their
    hooks make, the functions of the loss and optimizer hooks, and the optimizer classes defined beside the
    latter. No optimizer is made: the first one torch makes imports its compiler (1.3 s)."""
    block = components.block(config)
    hooks = [components.function(h) for h in ("toolkit_cross_entropy", "toolkit_optimizer")]
    hooks = [f for f in hooks if f is not None]  # None: it lives in a child (no key is kept then)
    classes = dict.fromkeys(v for f in hooks for v in vars(inspect.getmodule(f) or object).values()
                            if isinstance(v, type) and issubclass(v, torch.optim.Optimizer) and v.__module__ == f.__module__)
    return type(block), type(getattr(block, "attn", None)), *hooks, *classes


class Pipeline(DataStages):
    """One run of the reference pipeline with the given components: its data (``DataStages``), then its
    models, each built when first asked for (``STAGES``)."""

    def __init__(self, components: Components | None = None, config: PipelineConfig | None = None,
                 cache_dir: Path | None = None, log=print, reward_code: str | None = None, shipped: bool = True):
        """``reward_code``: the whole source of the reward component, given by a caller that knows it
        (the instructor's solution file); the reward model is then cached on disk under its hash. A
        submission's reward model is trained on every run: its code may import files a key would miss.
        ``shipped`` False: train (or load from the cache) even the models that come with the toolkit
        (``SHIPPED``), as a benchmark of training does."""
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        super().__init__(components or Components(), config or PipelineConfig(), cache.Cache(self.cache_dir, shipped))
        self.reward_code = reward_code
        self.log = log
        self.curves: dict[str, list[float]] = {}
        seed_everything(self.config.seed, self.config.threads)

    def sharing_base(self, components: Components) -> "Pipeline":
        """A pipeline with other components that reuses this one's data and base model.

        Only the later stages (the SFT mask, the reward model) may differ: the tokenizer
        and the attention, which the data and the base model depend on, must be the same.
        """
        for comp in [c for c in COMPONENTS if c in USES["base_model"]]:
            if components.source(comp) != self.components.source(comp):
                raise ValueError(f"sharing_base: the {comp} differs ({components.source(comp)})")
        other = Pipeline(components, self.config, self.cache_dir, self.log, shipped=self.store.shipped)
        for stage in (*BASE_DATA, "base_model"):
            if stage in self.__dict__:
                other.__dict__[stage] = self.__dict__[stage]
        return other

    def new_model(self) -> GPT:
        """A GPT with the block and attention components, starting from the reference GPT's initial weights
        (the baselines', drawn under the seed). Their parameters are named as the contract says (the checks
        require it), so a correct module starts where the reference does however it draws its own; and
        under ``toolkit grade``, where the module lives in the child and the grader holds only its
        parameters' shapes, the grader gives them the same values as ``toolkit run`` does."""
        seed_everything(self.config.seed, self.config.threads)
        reference = GPT(self.model_config)
        model = GPT(self.model_config, self.components.block)
        mine = model.state_dict(keep_vars=True)  # a module's own buffers, and what has another shape, keep their values
        model.load_state_dict({k: v for k, v in reference.state_dict().items()
                               if k in mine and mine[k].shape == v.shape}, strict=False)
        if any(p.is_meta for p in model.parameters()):  # a module of the child's named otherwise
            names = sorted(n for n, p in model.named_parameters() if p.is_meta)[:3]
            raise PluginError(f"the GPT's parameters {', '.join(names)} are not among the reference's (named as "
                              "toolkit.hookspecs says), so the GPT cannot be initialised")
        return model

    def seed(self, seed: int) -> None:
        """Seed the generators that the components' code draws from (a module's initial weights)."""
        seed_everything(seed, self.config.threads)

    def own(self, module, backbone):
        """The module a component's hook built on ``backbone``, ready to train here (``ChildPipeline``
        fetches the initial weights of one that lives in the child)."""
        return module

    # -- models: each cached under a key that hashes what it depends on ----------------------
    def base_key(self) -> str:
        """Hash of everything the base model depends on."""
        c = self.config  # only the fields pretraining depends on: SFT settings do not count
        settings = json.dumps({"version": PIPELINE_VERSION, "seed": c.seed, "threads": c.threads,
                               "pretrain": asdict(c.pretrain), "model": self.model_config.to_dict()}, sort_keys=True)
        code = code_digest(*PRETRAINING_CODE, *components_code(self.components, self.model_config))
        return cache.key(settings, self.stream, code)

    def training(self) -> dict:
        """The optimizer component's hooks, as the training loops take them."""
        return dict(optimizer=self.components.optimizer, loss=self.components.cross_entropy)

    @cached_property
    def base_model(self) -> GPT:
        model = self.new_model()
        self._train_or_load(model, "pretrain", f"base-{self.base_key()}",
                            lambda: pretrain(model, self.train_stream, self.config.pretrain, **self.training()),
                            f"base model: pretraining {self.config.pretrain.steps} steps (cached afterwards) ...")
        return model

    def chat_key(self) -> str:
        """Hash of what the chat model depends on: the base model, the SFT settings, the chats and the mask."""
        tokens, mask = self.sft_data
        return cache.key(f"{self.base_key()}{asdict(self.config.sft)}", code_digest(*SFT_CODE), tokens, mask)

    @cached_property
    def chat_model(self) -> GPT:
        """The base model after SFT with the mask component; cached under ``chat_key``."""
        model = copy.deepcopy(self.base_model)
        tokens, mask = self.sft_data
        self._train_or_load(model, "sft", f"sft-{self.chat_key()}",
                            lambda: sft(model, tokens, mask, self.config.sft, replay=self.train_stream,
                                        **self.training()),
                            f"chat model: SFT {self.config.sft.steps} steps on {len(tokens)} conversations ...")
        return model

    def reward_key(self) -> str | None:
        """Hash of what the reward model depends on, or None if its code is not known in full."""
        if self.reward_code is None:
            return None
        pairs = [t for tokens, lengths in self.preference_data["train"] for t in (tokens, lengths)]
        return cache.key(f"{self.base_key()}{asdict(self.config.reward)}{self.reward_code}", *pairs)

    @cached_property
    def reward_model(self):
        """The reward component's model on a copy of the base model, trained on the train pairs
        (``config.reward.seed`` seeds its initialisation and its batches); cached under ``reward_key``."""
        backbone, pairs = copy.deepcopy(self.base_model), self.preference_data["train"]
        self.seed(self.config.reward.seed)  # after building the base model, whose init would otherwise
        model = self.own(self.components.reward_model(backbone), backbone)  # shift the head's on a first run
        key = self.reward_key()
        self._train_or_load(model, "reward", key and f"reward-{key}",
                            lambda: rlhf.train_reward_model(model, self.components.reward_loss, *pairs, self.config.reward,
                                                            self.components.optimizer),
                            f"reward model: {self.config.reward.steps} steps on preference pairs ...")
        return model.eval()

    @cached_property
    def rlhf_model(self) -> GPT:
        """The chat model after RLHF with this pipeline's reward model."""
        chat, reward_model = self.chat_model, self.reward_model  # built first: seeding below is then all RLHF's
        seed_everything(self.config.seed, self.config.threads)
        questions = [self.world.question(f) for f in self.world.sft_facts]
        self.log(f"RLHF: {self.config.rlhf.steps} steps ...")
        t0 = time.perf_counter()
        model, curves = rlhf.rlhf(chat, reward_model, self.tokenizer, questions, self.config.rlhf,
                                  sampler=self.components.sample, optimizer=self.components.optimizer)
        self.curves.update({f"rlhf_{k}": v for k, v in curves.items()})
        self.timings["rlhf"] = time.perf_counter() - t0
        return model

    def _train_or_load(self, model: GPT, stage: str, name: str | None, train, message: str) -> None:
        """Load ``model`` from the model ``name``.pt (shipped, or in the cache folder), or run ``train()``
        (returns the loss curve) and save it there; ``name`` None: train, and cache nothing."""
        def make() -> dict:
            self.log(message)
            t0 = time.perf_counter()
            self.curves[stage] = train()
            self.timings[stage] = time.perf_counter() - t0
            return {"model": model.state_dict(), "curve": self.curves[stage]}

        found = self.store.model(name and f"{name}.pt", make)
        if found is not None:
            path, where, state = found
            model.load_state_dict(state["model"])
            self.curves[stage] = state["curve"]
            self.log(f"{stage}: loaded {where} {path}")


def ship_models() -> list[Path]:
    """Train the default configuration's base model and baseline chat model afresh and put them in
    ``SHIPPED``, in place of those there: run after a change to their code or data (tests/test_shipped.py says so)."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        pipeline = Pipeline(cache_dir=Path(folder), shipped=False)
        pipeline.chat_model  # and the base model it starts from
        names = [f"base-{pipeline.base_key()}.pt", f"sft-{pipeline.chat_key()}.pt"]
        for name in names:  # saved again under the final name, which the file holds: the same model, the same bytes
            torch.save(torch.load(Path(folder) / name, weights_only=True), SHIPPED / name)
    for old in [*SHIPPED.glob("base-*.pt"), *SHIPPED.glob("sft-*.pt")]:  # only once the new ones are there
        if old.name not in names:
            old.unlink()
    return [SHIPPED / name for name in names]


if __name__ == "__main__":
    for path in ship_models():
        print(f"wrote {path}")
