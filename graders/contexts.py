"""The contexts the pipeline runs a submission's code in: the unit checks run their cases there too.

The pipeline runs an attention module in float32 at its own widths (n_embd 128 and 4 heads in the
default configuration, 64 and 2 in the small one), on up to ``block_size`` tokens, in batches of 1
to 64 rows; it samples the next token from logits over its tokenizer's vocabulary (604 tokens with
the baseline's tokenizer, up to the 1024 asked) in batches as large; it puts the reward head on its
own base model. A unit check that only ever used float64 at width 16, or rows of 12 logits, could
be told from the pipeline by its inputs, and a submission could behave one way in the check and
another in the pipeline. So each unit check of attention, block, reward, sampler and optimizer runs
its cases in the pipeline's contexts as well as in its own, with shapes, sizes and an order drawn
from the instructor's seed (``run_seed``): no constant a submission can read says which call is a
check's. The pipeline also calls a module in two modes (``Mode``): with gradients on and in
``.train()`` while it trains, under ``torch.no_grad()`` and in ``.eval()`` while it probes; the
checks of attention and block call theirs in both, drawn per case (``with_modes``).

The seed is kept in the check's metrics (``contexts_seed``), so that a verdict can be replayed.
When the submission's code raises on a context's inputs, its message is not shown
(``message_hidden``), as in a hidden check: its text is the student's to choose.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from dataclasses import dataclass

import torch
from torch import nn

from graders import instructor_seed
from toolkit.model import GPTConfig
from toolkit.config import PipelineConfig
from toolkit.pipeline import Pipeline
from toolkit.checks import CheckFailed
from toolkit.plugins import Components, PluginError

@contextlib.contextmanager
def message_hidden(what: str):
    """Around calls of the submission's code on a context's inputs (drawn from the instructor's seed):
    an error it raises is told without its message, which could carry those inputs out, as in a hidden
    check. The kit's own words on what the code returned (a ``CheckFailed`` not caused by the
    submission's error) are kept."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - the submission's code failing
        if isinstance(e, CheckFailed) and not isinstance(e.__cause__, PluginError):
            raise
        raise CheckFailed(f"{what}: the submission's code raised an error on the pipeline's inputs (its message is "
                          "not shown: it could carry the check's inputs)") from None


DTYPES = (torch.float32, torch.float64)  # float32: the pipeline trains and probes in it; float64: tight checks
SMALL_VOCAB = (6, 100)  # the vocabularies of the checks' own cases: at most 100 tokens


@dataclass(frozen=True)
class Where:
    """One context: a dtype, the widths of a model (``model``: n_embd, n_head, block_size, vocab_size),
    a batch size and a sequence length."""

    dtype: torch.dtype
    model: GPTConfig
    batch: int  # B
    tokens: int  # T, 1 .. model.block_size

    def __str__(self) -> str:
        m = self.model
        return (f"{str(self.dtype).removeprefix('torch.')}, B={self.batch} T={self.tokens} C={m.n_embd} "
                f"n_head={m.n_head} V={m.vocab_size}")


def run_seed(ctx) -> random.Random:
    """A random generator for the component's contexts, seeded from the instructor's seed
    (``graders.hidden.CONTEXTS_SEED``), which a student's copy of the graders lacks: no submission can
    know which call is a check's, and a re-run draws the same cases, as grading must. Without it (a
    student's own ``toolkit run``): the public seed 0. Its seed goes into the metrics as ``contexts_seed``."""
    secret = instructor_seed("CONTEXTS_SEED", 0)
    seed = int.from_bytes(hashlib.sha256(f"{secret}:{ctx.component}".encode()).digest()[:6], "big")
    ctx.metrics["contexts_seed"] = seed
    return random.Random(seed)


def torch_seed(rng: random.Random) -> torch.Generator:
    """A torch generator seeded from ``rng``: the inputs of one case."""
    return torch.Generator().manual_seed(rng.getrandbits(48))


def reference_pipeline(ctx) -> Pipeline:
    """Baselines everywhere (their models are cached): the tokenizer and the base model the pipeline of
    an attention-free component (reward, sampler) is built on. One per configuration and cache folder."""
    key = (ctx.config, str(ctx.cache_dir))
    if key not in _REFERENCE:
        _REFERENCE[key] = Pipeline(Components(), ctx.config, ctx.cache_dir, log=lambda msg: None)  # loads, quietly
    return _REFERENCE[key]


_REFERENCE: dict[tuple, Pipeline] = {}


def model_configs(config: PipelineConfig) -> list[GPTConfig]:
    """The model widths the pipeline uses: ``config``'s, the default configuration's and the small one's."""
    out = []
    for c in (config, PipelineConfig(), PipelineConfig.small()):
        if c.model not in out:
            out.append(c.model)
    return out


def vocab_sizes(config: PipelineConfig, rng: random.Random, pipeline_vocab: int | None = None) -> list[int]:
    """The vocabularies the pipeline's models have: the size asked of the tokenizer (1024), the one the
    pipeline's tokenizer returned (``pipeline_vocab``: 604 for the baseline's), and one drawn between."""
    sizes = [config.vocab_size, rng.randint(257, config.vocab_size)]
    return sorted(set(sizes + ([pipeline_vocab] if pipeline_vocab else [])))


def batch_sizes(config: PipelineConfig) -> list[int]:
    """The batch sizes the pipeline calls with: one prompt, an evaluation batch (8), a training batch,
    a reward batch, the rows of an RLHF step."""
    rl = config.rlhf
    return sorted({1, 8, config.pretrain.batch_size, config.reward.batch_size, rl.prompts_per_step * rl.samples_per_prompt})


def pipeline_contexts(config: PipelineConfig, rng: random.Random, dtypes=DTYPES,
                      pipeline_vocab: int | None = None, max_batch: int | None = None) -> list[Where]:
    """A context per model width of the pipeline and dtype, its vocabulary, batch size and length drawn
    by ``rng`` (one context uses the full block), in an order drawn by ``rng``."""
    out = []
    for model in model_configs(config):
        for dtype in dtypes:
            vocab = rng.choice(vocab_sizes(config, rng, pipeline_vocab))
            batch = rng.choice([b for b in batch_sizes(config) if max_batch is None or b <= max_batch])
            m = GPTConfig(vocab_size=vocab, block_size=model.block_size, n_layer=model.n_layer,
                          n_head=model.n_head, n_embd=model.n_embd)
            out.append(Where(dtype, m, batch, rng.randint(2, model.block_size)))
    rng.shuffle(out)
    first = out[0]
    out[0] = Where(first.dtype, first.model, first.batch, first.model.block_size)  # the whole block, once
    return out


def pipeline_calls(config: PipelineConfig) -> list[tuple[Where, "Mode"]]:
    """The calls the pipeline and the behavioural checks make of a module, exactly, at the configuration's
    width: a training step's (``pretrain.batch_size`` rows of a whole block, float32, gradients on, in
    ``.train()``), an evaluation's (as many rows, and 8 for the logits a check compares, under no_grad, in
    ``.eval()``). A unit check holds them among its cases: code right only where the pipeline runs it is
    then right and wrong in one check (``same_everywhere``)."""
    m, B = config.model, config.pretrain.batch_size
    return [(Where(torch.float32, m, B, m.block_size), Mode(grad=True, train=True)),
            (Where(torch.float32, m, B, m.block_size), Mode(grad=False, train=False)),
            (Where(torch.float32, m, 8, m.block_size), Mode(grad=False, train=False))]


@dataclass(frozen=True)
class Mode:
    """How the pipeline calls a module: with gradients on (``grad``: training) or off (probing and
    generating), in ``.train()`` or ``.eval()`` state (``train``)."""

    grad: bool
    train: bool

    def __str__(self) -> str:
        return (f"{'with gradients on' if self.grad else 'under torch.no_grad()'}, "
                f"in .{'train' if self.train else 'eval'}() mode")


def modes(rng: random.Random, n: int) -> list[Mode]:
    """A mode for each of ``n`` calls, drawn by ``rng``: all four once if n >= 4 (else a mode and its
    opposite: both values of each), the rest at random, in a drawn order. A module that computes
    right in some modes only meets one of the others."""
    every = [Mode(grad, train) for grad in (True, False) for train in (True, False)]
    rng.shuffle(every)
    first = every if n >= 4 else [every[0], Mode(not every[0].grad, not every[0].train)]
    out = (first + [rng.choice(every) for _ in range(n)])[:n]
    rng.shuffle(out)
    return out


def with_modes(rng: random.Random, *groups: list) -> list[tuple[object, Mode]]:
    """Each case of each group (a check's own cases, the pipeline's) with its mode (``modes``, drawn
    per group: each group meets every mode it can)."""
    return [(case, mode) for group in groups for case, mode in zip(group, modes(rng, len(group)))]


@contextlib.contextmanager
def called_in(module: nn.Module, mode: Mode):
    """Calls of ``module`` within the block run in ``mode``: gradients on or off, ``.train()`` or ``.eval()``."""
    module.train(mode.train)
    with torch.set_grad_enabled(mode.grad):
        yield


# -- one behaviour in every context: what the behavioural checks stand on -------------------------
def telling(B: int, T: int, n_head: int = 2) -> bool:
    """Whether a case can tell the classic mistakes from right code: batch rows, positions and heads
    mixed, a mask missing, a sum for a mean all vanish with one row, one position or one head. Only
    such cases count when a check says the code is right in some contexts and wrong in others."""
    return B >= 2 and T >= 2 and n_head >= 2


def judged_everywhere(ctx, cases: list, judge, said=str, counts=lambda case: True) -> None:
    """``judge(case)`` on every case, each raising CheckFailed where the code is wrong; the first failure
    is raised once all have run. The verdicts of the cases that ``counts`` (``telling`` ones) are kept
    (``record_verdicts``, each case as ``said``)."""
    failures = []
    for case in cases:
        try:
            judge(case)
        except CheckFailed as e:
            failures.append(e)
        else:
            failures.append(None)
    record_verdicts(ctx, [(said(case), f is None) for case, f in zip(cases, failures) if counts(case)])
    first = next((f for f in failures if f is not None), None)
    if first is not None:
        raise first


def record_verdicts(ctx, verdicts: list[tuple[str, bool]]) -> None:
    """Keep in the check's metrics a case it found right and one it found wrong, if there are both
    (``right_and_wrong``; ``verdicts``: each case as said, and whether it was right): the code computes
    right in some contexts and wrong in others, which the behavioural checks standing on this check
    then refuse (``same_everywhere``)."""
    right = next((case for case, ok in verdicts if ok), None)
    wrong = next((case for case, ok in verdicts if not ok), None)
    if right is not None and wrong is not None:
        ctx.metrics["right_and_wrong"] = [right, wrong]


def same_everywhere(ctx, *checks: str) -> None:
    """Before a behavioural check that stands on the unit ``checks``: fail it if one of them found the
    code right in some of its contexts and wrong in others (``record_verdicts``). The pipeline's
    behaviour is evidence only for code that computes the same wherever it is called: code right in the
    pipeline's contexts and wrong in a check's would otherwise earn the behavioural points it would lose
    written wrong everywhere (issue 31), and it is refused before any model is trained for it. Before
    the unit check has run (a notebook's cell), nothing is known, and nothing refused."""
    for check in checks:
        split = ctx.earlier.get(check, {}).get("right_and_wrong")
        if split:
            raise CheckFailed(f"{check} found your code right for {split[0]} but wrong for {split[1]}: the "
                              "pipeline's behaviour counts only for code that computes the same in every context")
