"""The reference GPT pipeline: world -> tokenizer -> base model -> chat model -> probe.

Every stage takes its components from a ``Components`` object, so a student's plugin
can be swapped in anywhere. The models that take long to train are cached on disk under a
key that hashes everything they depend on: the base model, the chat model, and the reward
model when its code is known in full (the instructor's). All randomness is seeded, and the
number of torch threads is pinned, so a run gives the same numbers every time on one machine.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import hashlib
import inspect
import json
import os
import textwrap
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from functools import cache, cached_property
from pathlib import Path

import torch
from filelock import FileLock

from toolkit import probe, rlhf
from toolkit import template as template_module
from toolkit import tokenizer as tokenizer_module
from toolkit import world as world_module
from toolkit.baselines import WholeWordTokenizer
from toolkit.components import COMPONENTS
from toolkit.model import GPT, MLP, Block, GPTConfig, SDPAttention
from toolkit.plugins import Components, PluginError
from toolkit.template import encode_batch, render_chat, render_document
from toolkit.train import (TrainConfig, by_length, fit, lr_at, masked_loss_sum, next_token_loss, pretrain, reach, sft,
                           stream_batch, stream_loss)
from toolkit.world import World

PIPELINE_VERSION = 1  # bump when a change to code that no key hashes (``code_digest``) changes what a stage produces
_SHARED: dict[tuple, object] = {}  # the data stages built in this process, by key (``Pipeline._shared``)
MAX_VOCAB = 1 << 16  # the largest vocabulary a tokenizer may report (the model allocates vocab x width)
SHIPPED = Path(__file__).parent / "data"
"""Models that come with the toolkit, found like the cache's: the default configuration's base model and
its chat model fine-tuned with the baseline's mask (the reward and sampler checks start from it), which
no submission changes, so that no first run trains them (``python -m toolkit.pipeline`` makes them again)."""

STAGES = ("tokenizer", "base_model", "chat_model", "reward_model", "rlhf_model")
USES = {stage: {c.name for c in COMPONENTS.values() if stage in c.stages} for stage in STAGES}
"""Stage -> the components whose hooks building it calls (its earlier stages' included): read from
``Component.stages``. The class grader builds every stage itself (``toolkit.grading.remote.ChildPipeline``),
calling the hooks of the component under test in the submission's child; a model of one of them is not cached."""


@dataclass(frozen=True)
class PipelineConfig:
    seed: int = 0
    n_docs: int = 20000  # pretraining documents (about 2.7 MB of text)
    vocab_size: int = 1024  # asked of the tokenizer; the model uses what it returns
    model: GPTConfig = field(default_factory=GPTConfig)
    pretrain: TrainConfig = field(default_factory=lambda: TrainConfig(steps=800, lr=3e-3))
    sft: TrainConfig = field(default_factory=lambda: TrainConfig(steps=200, lr=2e-3, warmup=5, replay_batch_size=8))
    # sft.lr: over five seeds, 2e-3 lifted the worst seed's headline and held-out Answer (benchmarks/README.md, seeds.py)
    reward: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100, lr=1.5e-3, warmup=10))
    # reward: 100 steps at 1.5e-3 hold the accuracy and RLHF of 150 at 1e-3 over five seeds; 75 at 2e-3 did not
    rlhf: rlhf.RLHFConfig = field(default_factory=rlhf.RLHFConfig)
    threads: int = 2  # pinned: float sums depend on it
    probe_temperature: float = 0.0  # the prompt set: greedy, one reply per prompt
    headline_temperature: float = 1.0  # the headline: sampled, to see the model's distribution
    headline_samples: int = 40

    @classmethod
    def small(cls) -> "PipelineConfig":
        """A fast configuration for tests: smaller everything. Behaviour is weaker."""
        return cls(n_docs=3000, model=GPTConfig(block_size=64, n_layer=2, n_head=2, n_embd=64),
                   pretrain=TrainConfig(steps=60, lr=3e-3),
                   sft=TrainConfig(steps=10, lr=1e-3, warmup=2, replay_batch_size=4),
                   headline_samples=8)

    def to_dict(self) -> dict:
        return asdict(self)


@cache  # once per process for the same objects
def code_digest(*objects) -> bytes:
    """A digest of what the objects' code does: their syntax trees, without comments and docstrings,
    so that editing a comment keeps the models cached (and the shipped ones valid). An object whose
    source cannot be read or parsed (defined in a notebook's cell) counts by its name."""
    h = hashlib.sha256()
    for obj in objects:
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
        except (OSError, TypeError, ValueError, SyntaxError, RecursionError):
            h.update(f"{obj.__module__}.{getattr(obj, '__qualname__', '')}".encode())
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(node):
                node.body = node.body[1:] or [ast.Pass()]
        h.update(ast.dump(tree).encode())
    return h.digest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("TOOLKIT_CACHE", Path.home() / ".cache" / "toolkit"))


def seed_everything(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


PRETRAINING_CODE = (GPTConfig, MLP, Block, GPT, TrainConfig, lr_at, fit, stream_batch, next_token_loss, pretrain,
                    seed_everything)
"""What pretraining runs, but the attention: its digest (``code_digest``) is part of the base model's key."""
DATA_CODE = (world_module, template_module, tokenizer_module, WholeWordTokenizer)
"""What the baseline's tokenizer and the stream are made by: its digest is part of their key in the cache."""
SFT_CODE = (sft, masked_loss_sum, reach, by_length)
"""What SFT runs beyond pretraining's code: its digest is part of the chat model's key."""


class Pipeline:
    """One run of the reference pipeline with the given components."""

    def __init__(self, components: Components | None = None, config: PipelineConfig | None = None,
                 cache_dir: Path | None = None, log=print, reward_code: str | None = None, shipped: bool = True):
        """``reward_code``: the whole source of the reward component, given by a caller that knows it
        (the instructor's solution file); the reward model is then cached on disk under its hash. A
        submission's reward model is trained on every run: its code may import files a key would miss.
        ``shipped`` False: train (or load from the cache) even the models that come with the toolkit
        (``SHIPPED``), as a benchmark of training does."""
        self.components = components or Components()
        self.reward_code = reward_code
        self.shipped = shipped
        self.config = config or PipelineConfig()
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.log = log
        self.curves: dict[str, list[float]] = {}
        self.timings: dict[str, float] = {}
        seed_everything(self.config.seed, self.config.threads)

    def sharing_base(self, components: Components) -> "Pipeline":
        """A pipeline with other components that reuses this one's data and base model.

        Only the later stages (the SFT mask, the reward model) may differ: the tokenizer
        and the attention, which the data and the base model depend on, must be the same.
        """
        for comp in [c for c in COMPONENTS if c in USES["base_model"]]:
            if components.source(comp) != self.components.source(comp):
                raise ValueError(f"sharing_base: the {comp} differs ({components.source(comp)})")
        other = Pipeline(components, self.config, self.cache_dir, self.log, shipped=self.shipped)
        for stage in ("world", "corpus", "conversations", "tokenizer", "stream", "model_config", "base_model"):
            if stage in self.__dict__:
                other.__dict__[stage] = self.__dict__[stage]
        return other

    # -- data ------------------------------------------------------------------------
    # Built once per process (``_SHARED``) under what each depends on; each pipeline gets its own
    # copy. The tokenizer and the stream are shared only for the baseline's tokenizer, whose
    # training is known to depend on nothing else: a submission's tokenizer is trained per pipeline.
    # Those two also go to the cache folder (``_stored``): building them takes about 4 s.
    def _shared(self, key: tuple, build):
        if key not in _SHARED:
            _SHARED[key] = build()
        return copy.deepcopy(_SHARED[key])

    def _stored(self, key: tuple, build):
        """``_shared``, and kept in the cache folder as ``data-<hash>.pt`` (tensors and plain containers)
        for the next process, under ``key`` and the code the data is made by (``DATA_CODE``)."""
        def load_or_build():
            name = hashlib.sha256(repr(key).encode() + code_digest(*DATA_CODE)).hexdigest()[:20]
            path = self.cache_dir / f"data-{name}.pt"
            try:
                return torch.load(path, weights_only=True)
            except Exception:  # not there, or unreadable: built again
                value = build()
            with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                save(value, path)
            return value
        return self._shared(key, load_or_build)

    @cached_property
    def world(self) -> World:
        return World(seed=self.config.seed)

    @cached_property
    def _world_key(self) -> tuple:
        return repr(self.world), self.config.seed  # every field of the world; the seed of its data sets

    @cached_property
    def corpus(self) -> str:
        def build():
            docs = self.world.pretraining_documents(self.config.n_docs, seed=self.config.seed)
            return "".join(render_document(d) for d in docs)
        return self._shared(("corpus", *self._world_key, self.config.n_docs), build)

    @cached_property
    def conversations(self) -> list[str]:
        """The SFT conversations, rendered in the chat template."""
        return self._shared(("conversations", *self._world_key),
                            lambda: [render_chat(c) for c in self.world.sft_conversations(seed=self.config.seed)])

    @cached_property
    def _tokenizer_key(self) -> tuple | None:
        """The key of the trained tokenizer and the stream, or None: not shared (not the baseline's)."""
        baseline = (self.components.source("tokenizer") == "baseline.tokenizer"
                    and type(self.components.tokenizer()) is WholeWordTokenizer)
        return (*self._world_key, self.config.n_docs, self.config.vocab_size) if baseline else None

    @cached_property
    def tokenizer(self):
        """Trained on all the text the pipeline uses: the corpus and the conversations."""
        def build():
            tok = self.components.tokenizer()
            t0 = time.perf_counter()
            tok.train(self.corpus + "".join(self.conversations), self.config.vocab_size)
            self.timings["tokenizer"] = time.perf_counter() - t0
            return tok
        key = self._tokenizer_key
        if key is None:
            return build()
        tok = WholeWordTokenizer()
        tok.words = self._stored(("tokenizer", *key), lambda: build().words)
        return tok

    @cached_property
    def stream(self) -> torch.Tensor:
        """The corpus as one stream of token ids; the last 5% is held out for validation."""
        build = lambda: torch.tensor(self.tokenizer.encode(self.corpus), dtype=torch.long)  # noqa: E731
        key = self._tokenizer_key
        return build() if key is None else self._stored(("stream", *key), build)

    @property
    def train_stream(self) -> torch.Tensor:
        return self.stream[: int(0.95 * len(self.stream))]

    @property
    def val_stream(self) -> torch.Tensor:
        return self.stream[int(0.95 * len(self.stream)) :]

    @cached_property
    def model_config(self) -> GPTConfig:
        vocab = self.tokenizer.vocab_size
        if type(vocab) is not int or not 256 < vocab <= MAX_VOCAB:
            raise PluginError(f"{self.components.source('tokenizer')}: the tokenizer's vocab_size is {vocab!r}; "
                              f"expected an int from 257 to {MAX_VOCAB}")
        return replace(self.config.model, vocab_size=vocab)

    def new_model(self) -> GPT:
        """A GPT with the attention component, starting from the reference GPT's initial weights (the
        baseline's attention, drawn under the seed). An attention's parameters are c_attn and c_proj
        (the checks require it), so a correct module starts where the reference does however it draws
        its own; and under ``toolkit grade``, where the module lives in the child and the grader holds
        only its parameters' shapes, the grader gives them the same values as ``toolkit run`` does."""
        seed_everything(self.config.seed, self.config.threads)
        reference = GPT(self.model_config, SDPAttention)
        model = GPT(self.model_config, self.components.attention)
        mine = model.state_dict(keep_vars=True)  # a module's own buffers, and what has another shape, keep their values
        model.load_state_dict({k: v for k, v in reference.state_dict().items()
                               if k in mine and mine[k].shape == v.shape}, strict=False)
        if any(p.is_meta for p in model.parameters()):  # a module of the child's named otherwise
            raise PluginError(f"{self.components.source('attention')}: the attention's parameters are not c_attn "
                              "(Linear C->3C) and c_proj (Linear C->C), so the GPT cannot be initialised")
        return model

    def seed(self, seed: int) -> None:
        """Seed the generators that the components' code draws from (a module's initial weights)."""
        seed_everything(seed, self.config.threads)

    def own(self, module, backbone):
        """The module a component's hook built on ``backbone``, ready to train here (``ChildPipeline``
        fetches the initial weights of one that lives in the child)."""
        return module

    # -- base model --------------------------------------------------------------------
    def base_key(self) -> str:
        """Hash of everything the base model depends on."""
        h = hashlib.sha256()
        c = self.config  # only the fields pretraining depends on: SFT settings do not count
        h.update(json.dumps({"version": PIPELINE_VERSION, "seed": c.seed, "threads": c.threads,
                             "pretrain": asdict(c.pretrain), "model": self.model_config.to_dict()},
                            sort_keys=True).encode())
        h.update(self.stream.numpy().tobytes())
        h.update(code_digest(*PRETRAINING_CODE, type(self.components.attention(self.model_config))))
        return h.hexdigest()[:20]

    @cached_property
    def base_model(self) -> GPT:
        model = self.new_model()
        self._train_or_load(model, "pretrain", f"base-{self.base_key()}",
                            lambda: pretrain(model, self.train_stream, self.config.pretrain),
                            f"base model: pretraining {self.config.pretrain.steps} steps (cached afterwards) ...")
        return model

    def _train_or_load(self, model: GPT, stage: str, name: str | None, train, message: str) -> None:
        """Load ``model`` from the cache file ``name``.pt, or run ``train()`` (returns the loss curve) and
        save it there; ``name`` None: train, and cache nothing. Processes and threads that need the
        same model at once take turns: one trains it, the others wait and load it."""
        path = self.cache_dir / f"{name}.pt" if name else None
        if path is None:
            self._train(stage, train, message)
            return
        if self.shipped and (SHIPPED / path.name).is_file():
            self._load(model, stage, SHIPPED / path.name, "shipped with the toolkit")
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_suffix(".lock")):  # one lock file per model, on every OS
            if path.exists():
                self._load(model, stage, path, "from cache")
                return
            self._train(stage, train, message)
            save({"model": model.state_dict(), "curve": self.curves[stage]}, path)

    def _load(self, model: GPT, stage: str, path: Path, where: str) -> None:
        state = torch.load(path, weights_only=True)
        model.load_state_dict(state["model"])
        self.curves[stage] = state["curve"]
        self.log(f"{stage}: loaded {where} {path}")

    def _train(self, stage: str, train, message: str) -> None:
        self.log(message)
        t0 = time.perf_counter()
        self.curves[stage] = train()
        self.timings[stage] = time.perf_counter() - t0

    def val_loss(self, model: GPT) -> float:
        return stream_loss(model, self.val_stream)

    # -- chat model --------------------------------------------------------------------
    @cached_property
    def sft_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The SFT conversations as tokens (N, T) and the plugin's mask (N, T-1)."""
        tokens, _ = encode_batch(self.tokenizer, self.conversations, self.model_config.block_size + 1)
        mask = self.components.sft_mask(tokens, dict(self.tokenizer.special_tokens))
        return tokens, check_mask(mask, tokens, self.components.source("sft_mask"))

    def chat_key(self) -> str:
        """Hash of what the chat model depends on: the base model, the SFT settings, the chats and the mask."""
        tokens, mask = self.sft_data
        h = hashlib.sha256(f"{self.base_key()}{asdict(self.config.sft)}".encode())
        h.update(code_digest(*SFT_CODE))
        h.update(tokens.numpy().tobytes())
        h.update(mask.numpy().tobytes())
        return h.hexdigest()[:20]

    @cached_property
    def chat_model(self) -> GPT:
        """The base model after SFT with the mask component; cached under ``chat_key``."""
        model = copy.deepcopy(self.base_model)
        tokens, mask = self.sft_data
        self._train_or_load(model, "sft", f"sft-{self.chat_key()}",
                            lambda: sft(model, tokens, mask, self.config.sft, replay=self.train_stream),
                            f"chat model: SFT {self.config.sft.steps} steps on {len(tokens)} conversations ...")
        return model

    # -- reward model and RLHF ------------------------------------------------------------
    @cached_property
    def preference_data(self) -> dict[str, tuple]:
        """Preference pairs as ((tokens, lengths) chosen, (tokens, lengths) rejected), split by fact:
        ``train`` on the facts of SFT (up to 4 pairs each), ``held_out`` on the facts held out of it
        (up to 8 pairs each, so that the accuracy measured on them is not a coin's worth of noise)."""
        held = {self.world.question(f) for f in self.world.held_out}
        out = {}
        for split, per_fact in (("train", 4), ("held_out", 8)):
            pairs = [p for p in self.world.preference_pairs(self.config.seed, per_fact)
                     if (p[0] in held) == (split == "held_out")]
            qs, chosen, rejected = zip(*pairs)
            T = self.model_config.block_size
            out[split] = (rlhf.encode_replies(self.tokenizer, qs, chosen, T),
                          rlhf.encode_replies(self.tokenizer, qs, rejected, T))
        return out

    def reward_key(self) -> str | None:
        """Hash of what the reward model depends on, or None if its code is not known in full."""
        if self.reward_code is None:
            return None
        h = hashlib.sha256(f"{self.base_key()}{asdict(self.config.reward)}{self.reward_code}".encode())
        for tokens, lengths in self.preference_data["train"]:
            h.update(tokens.numpy().tobytes())
            h.update(lengths.numpy().tobytes())
        return h.hexdigest()[:20]

    @cached_property
    def reward_model(self):
        """The reward component's model on a copy of the base model, trained on the train pairs
        (``config.reward.seed`` seeds its initialisation and its batches); cached under ``reward_key``."""
        backbone, pairs = copy.deepcopy(self.base_model), self.preference_data["train"]
        self.seed(self.config.reward.seed)  # after building the base model, whose init would otherwise
        model = self.own(self.components.reward_model(backbone), backbone)  # shift the head's on a first run
        key = self.reward_key()
        self._train_or_load(model, "reward", key and f"reward-{key}",
                            lambda: rlhf.train_reward_model(model, self.components.reward_loss, *pairs, self.config.reward),
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
                                  sampler=self.components.sample)
        self.curves.update({f"rlhf_{k}": v for k, v in curves.items()})
        self.timings["rlhf"] = time.perf_counter() - t0
        return model

    # -- behaviour ---------------------------------------------------------------------
    def probe(self, model: GPT, chat: bool, prompts: list[probe.Prompt], temperature: float | None = None,
              top_k: int | None = None, top_p: float | None = None) -> list[probe.Generation]:
        """Generate a reply to each prompt with the sampler component and classify it
        (``probe_temperature`` by default)."""
        t = self.config.probe_temperature if temperature is None else temperature
        return probe.run_probe(model, self.tokenizer, self.world, prompts, chat=chat, temperature=t, top_k=top_k,
                               top_p=top_p, seed=self.config.seed, sampler=self.components.sample)

    def user_turn(self, model: GPT, n: int = 30) -> int:
        """``probe.run_user_turn`` with the sampler component: how many of ``n`` bare user tags get a question."""
        return probe.run_user_turn(model, self.tokenizer, self.world, n=n, seed=self.config.seed,
                                   sampler=self.components.sample)


def save(value, path: Path) -> None:
    """``torch.save`` under a temporary name, then renamed: a killed run never leaves half a file,
    and another process reads the whole file or none."""
    tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
    torch.save(value, tmp)
    os.replace(tmp, path)


def check_mask(mask, tokens: torch.Tensor, plugin: str) -> torch.Tensor:
    """The mask as a BoolTensor (N, T-1), or a PluginError that says what was wrong."""
    expected = (tokens.shape[0], tokens.shape[1] - 1)
    if not isinstance(mask, torch.Tensor):
        raise PluginError(f"{plugin}: toolkit_sft_mask returned {type(mask).__name__}; expected a BoolTensor of shape {expected}")
    if tuple(mask.shape) != expected:
        hint = " (one per target: tokens[:, 1:])" if tuple(mask.shape) == tuple(tokens.shape) else ""
        raise PluginError(f"{plugin}: toolkit_sft_mask returned shape {tuple(mask.shape)}; expected {expected}{hint}")
    if mask.dtype != torch.bool:
        if not ((mask == 0) | (mask == 1)).all():
            raise PluginError(f"{plugin}: toolkit_sft_mask returned values other than 0/1 (dtype {mask.dtype})")
        mask = mask.bool()
    return mask


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
