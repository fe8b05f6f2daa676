"""Checks of the attention component (causal multi-head self-attention)."""

import contextlib
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from graders import contexts
from toolkit import probe
from toolkit.baselines import SDPAttention
from toolkit.checks import CheckFailed, check, child_side, on_case
from toolkit.model import GPT, GPTConfig
from toolkit.pipeline import Pipeline
from toolkit.plugins import Components
from toolkit.source_scan import names_used
from toolkit.template import base_prompt
from toolkit.train import pretrain, stream_batch

# (B, T, C, n_head): batch 1 and more, T = 1, one head and many, head sizes 4, 10, 3, 2.
SHAPES = [(1, 1, 8, 2), (2, 5, 12, 3), (3, 7, 10, 1), (2, 6, 24, 8), (1, 9, 16, 8)]
ATOL = 1e-9  # float64 throughout
ATOL32 = 1e-5  # float32, against the reference in float64: a correct module differs by ~1e-6 at width 128
TOLERANCE = {torch.float64: ATOL, torch.float32: ATOL32}


def seeded_module(components, B, T, C, nh, seed=0, dtype=torch.float64):
    """The attention of ``components`` in ``dtype`` with weights drawn from ``seed``, and an input (B, T, C)."""
    module, x, _ = seeded(components, B, T, C, nh, seed, dtype)
    return module, x


def seeded(components, B, T, C, nh, seed=0, dtype=torch.float64):
    """``seeded_module``, and the weights it loaded (a state dict in ``dtype``)."""
    gen = torch.Generator().manual_seed(seed)
    module = components.attention(GPTConfig(n_embd=C, n_head=nh))
    if not isinstance(module, nn.Module):
        raise CheckFailed(f"toolkit_attention returned {type(module).__name__}; expected an nn.Module")
    state = {
        "c_attn.weight": torch.randn(3 * C, C, generator=gen, dtype=torch.float64) / C**0.5,
        "c_attn.bias": torch.randn(3 * C, generator=gen, dtype=torch.float64) * 0.1,
        "c_proj.weight": torch.randn(C, C, generator=gen, dtype=torch.float64) / C**0.5,
        "c_proj.bias": torch.randn(C, generator=gen, dtype=torch.float64) * 0.1,
    }
    mine = sorted(name for name, _ in module.named_parameters())
    if mine != sorted(state):
        raise CheckFailed(f"the module's parameters are {mine}; expected exactly c_attn (Linear C->3C) and c_proj (Linear C->C)")
    state = {k: v.to(dtype) for k, v in state.items()}
    module = module.to(dtype)
    module.load_state_dict(state, strict=False)  # buffers (e.g. a causal mask) keep their values
    return module, torch.randn(B, T, C, generator=gen, dtype=torch.float64).to(dtype), state


def reference_output(state: dict, x: torch.Tensor, n_head: int) -> torch.Tensor:
    """The baseline's attention (``toolkit.baselines.SDPAttention``) with weights ``state`` on x (B, T, C),
    computed in float64 from the same (rounded) numbers: what a correct module gives, in any dtype."""
    C = x.shape[-1]
    ref = SDPAttention(GPTConfig(n_embd=C, n_head=n_head)).double()
    ref.load_state_dict({k: v.double() for k, v in state.items()})
    with torch.no_grad():
        return ref(x.double())


@dataclass(frozen=True)
class Case:
    """Seeded weights and input for one call: the checks' own shapes (float64) or a pipeline context."""

    B: int
    T: int
    C: int
    nh: int
    seed: int
    dtype: torch.dtype = torch.float64

    def __str__(self) -> str:
        dtype = "" if self.dtype == torch.float64 else f" in {str(self.dtype).removeprefix('torch.')}"
        return f"B={self.B} T={self.T} C={self.C} n_head={self.nh}{dtype}"


def case_at(w: contexts.Where, rng) -> Case:
    """The case of one context of the pipeline's (``graders.contexts``), its weights and input seeded by ``rng``."""
    return Case(w.batch, w.tokens, w.model.n_embd, w.model.n_head, rng.getrandbits(31), w.dtype)


def pipeline_cases(ctx, rng, max_batch: int | None = None) -> list[Case]:
    """A case per context of the pipeline (``graders.contexts``): its widths, float32 and float64, a
    batch size (at most ``max_batch``) and a length drawn by ``rng``."""
    return [case_at(w, rng) for w in contexts.pipeline_contexts(ctx.config, rng, max_batch=max_batch)]


def _forward(module, x, pipeline_case: bool = False):
    """``module(x)``, checked. In a pipeline's context (inputs drawn from the instructor's seed) an
    exception's text is not shown: it could carry those inputs out, as from a hidden check."""
    try:
        y = module(x)
    except Exception as e:  # noqa: BLE001 - the submission's code failing
        if not pipeline_case:
            raise
        raise CheckFailed(f"forward raised an error on an input {tuple(x.shape)} {x.dtype} of the pipeline's (its "
                          "message is not shown: it could carry the check's inputs)") from None
    if not isinstance(y, torch.Tensor) or y.shape != x.shape or y.dtype != x.dtype:
        got = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise CheckFailed(f"forward of an input {tuple(x.shape)} {x.dtype} returned {got}; expected the same shape "
                          "(B, T, C) and dtype")
    return y


@check("attention", points=3)
def matches_reference(ctx):
    "Same output as the reference on seeded weights and inputs, for several shapes and the pipeline's contexts, with gradients on and off, in train and eval mode (float64, atol 1e-9; float32, atol 1e-5)."
    expected = ctx.snapshot()["outputs"]
    own = [Case(B, T, C, nh, 0) for B, T, C, nh in SHAPES]
    rng = contexts.run_seed(ctx)
    cases = contexts.with_modes(rng, own, pipeline_cases(ctx, rng)) + [
        (case_at(w, rng), mode) for w, mode in contexts.pipeline_calls(ctx.config)]  # as the pipeline calls it
    errors = {}
    for i in [*range(len(own)), *rng.sample(range(len(own), len(cases)), len(cases) - len(own))]:  # judged in order
        case, mode = cases[i]
        with on_case(str(case)):
            module, x, state = seeded(ctx.components, case.B, case.T, case.C, case.nh, case.seed, case.dtype)
            with contexts.called_in(module, mode):
                got = _forward(module, x, pipeline_case=i >= len(own)).detach()
        want = torch.tensor(expected[i], dtype=torch.float64) if i < len(own) else reference_output(state, x, case.nh)
        errors[i] = ((got.double() - want).abs().max().item(), state, x, got)
    contexts.record_verdicts(ctx, [(f"{case}, {mode}", errors[i][0] <= TOLERANCE[case.dtype])
                                   for i, (case, mode) in enumerate(cases) if contexts.telling(case.B, case.T, case.nh)])
    for i, (case, mode) in enumerate(cases):
        tol = TOLERANCE[case.dtype]
        error, state, x, got = errors[i]
        if not error <= tol:
            raise CheckFailed(f"output differs from the reference by {error:.2e} (> {tol:g}) {mode}, for {case}: "
                              f"{name_mistake(state, x, case.nh, got)}")


def textbook(state: dict, x: torch.Tensor, n_head: int, causal: bool = True, scale: str = "sqrt",
             softmax_dim: int = -1, heads_by_view: bool = False) -> torch.Tensor:
    """Attention with weights ``state`` on x (B, T, C), in float64, by the textbook formula; or with one
    classic mistake: no causal mask, the scores divided by the head size (``scale="hs"``) or not at all
    (``"none"``), the softmax over the queries (``softmax_dim=-2``), the heads split by ``view(B, nh, T, hs)``."""
    x = x.double()
    B, T, C = x.shape
    hs = C // n_head
    q, k, v = (x @ state["c_attn.weight"].double().T + state["c_attn.bias"].double()).split(C, dim=2)
    if heads_by_view:
        q, k, v = (t.reshape(B, n_head, T, hs) for t in (q, k, v))
    else:
        q, k, v = (t.view(B, T, n_head, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
    scores = q @ k.transpose(-2, -1) / {"sqrt": hs ** 0.5, "hs": hs, "none": 1}[scale]  # (B, nh, T, T)
    if causal:
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = torch.softmax(scores, dim=softmax_dim) @ v  # (B, nh, T, hs)
    y = y.reshape(B, T, C) if heads_by_view else y.transpose(1, 2).reshape(B, T, C)
    return y @ state["c_proj.weight"].double().T + state["c_proj.bias"].double()


MISTAKES = [  # (the textbook with one classic mistake, what the reason says), the most common first
    (dict(causal=False), "it is attention without the causal mask: mask the scores of future positions (s > t) "
                         "with -inf before the softmax"),
    (dict(scale="hs"), "the scores are divided by the head size: divide them by sqrt(head size)"),
    (dict(scale="none"), "the scores are not scaled: divide them by sqrt(head size)"),
    (dict(softmax_dim=-2), "the softmax runs over the queries (dim -2): take it over the keys, the last dimension"),
    (dict(heads_by_view=True), "the head split is wrong: view(B, n_head, T, hs) mixes positions and heads; use "
                               "view(B, T, n_head, hs).transpose(1, 2)"),
]
MISTAKE_ATOL = 1e-4  # the module's output is that of a mistake (float32 differs by ~1e-6)


def name_mistake(state: dict, x: torch.Tensor, n_head: int, got: torch.Tensor) -> str:
    """What a wrong output says: the classic mistake whose output it is, or where to look."""
    for mistake, says in MISTAKES:
        wrong = textbook(state, x, n_head, **mistake)
        if (got.double() - wrong).abs().max().item() <= MISTAKE_ATOL:
            return says
    return ("it is none of the classic mistakes (mask, scale, softmax axis, head split): compare your q, k, v, "
            "scores and weights with the notebook's worked example step by step")


@check("attention", points=2)
def causal(ctx):
    "Output at position t does not change when tokens after t change (float64, atol 1e-9; and the pipeline's contexts), with gradients on and off, in train and eval mode."
    rng = contexts.run_seed(ctx)
    own = [Case(2, 8, 16, 4, 1)]
    cases = contexts.with_modes(rng, own, pipeline_cases(ctx, rng, max_batch=OBSERVED_BATCH))  # 4 forwards each
    for i, (case, mode) in enumerate(cases):
        with on_case(str(case)):
            module, x, state = seeded(ctx.components, case.B, case.T, case.C, case.nh, case.seed, case.dtype)
            positions = range(case.T - 1) if i == 0 else sorted(rng.sample(range(case.T - 1), min(3, case.T - 1)))
            with contexts.called_in(module, mode):
                _check_causal(module, x, state, positions, case, mode, pipeline_case=i > 0)


def _check_causal(module, x, state: dict, positions, case: Case, mode, pipeline_case: bool) -> None:
    """Change the tokens after each t of ``positions`` and compare the outputs up to t (CheckFailed if they moved)."""
    B, T, C = x.shape
    tol, where = TOLERANCE[case.dtype], f" ({case}, {mode})" if pipeline_case else ""
    y = _forward(module, x, pipeline_case).detach()
    for t in positions:
        x2 = x.clone()
        noise = torch.randn(B, T - t - 1, C, dtype=torch.float64, generator=torch.Generator().manual_seed(t))
        x2[:, t + 1 :] += noise.to(x.dtype)
        diff = (_forward(module, x2, pipeline_case).detach()[:, : t + 1] - y[:, : t + 1]).abs().max().item()
        if not diff <= tol:  # "not <=" so that NaN fails too
            raise CheckFailed(f"output at position {t} changed by {diff:.2e} when only tokens after {t} "
                              f"changed{where}: {future_leak(state, x, case.nh, y)}")


def future_leak(state: dict, x: torch.Tensor, n_head: int, y: torch.Tensor) -> str:
    """Why later tokens reach an earlier output: a softmax over the queries, or no mask at all."""
    if (y.double() - textbook(state, x, n_head, softmax_dim=-2)).abs().max().item() <= MISTAKE_ATOL:
        return ("the softmax runs over the queries (dim -2), which mixes in later positions: take it over the "
                "keys, the last dimension")
    return "mask the scores of future positions (s > t) with -inf before the softmax"


@check("attention", points=1)
def stable(ctx):
    "Inputs whose attention scores exceed 100 give finite outputs (float32, where exp(89) is inf; the pipeline's widths too), with gradients on and off, in train and eval mode."
    rng = contexts.run_seed(ctx)
    own = [Case(2, 6, 16, 4, 2, torch.float32)]
    pipeline = [c for c in pipeline_cases(ctx, rng, max_batch=OBSERVED_BATCH) if c.dtype == torch.float32]
    for i, (case, mode) in enumerate(contexts.with_modes(rng, own, pipeline)):
        with on_case(str(case)):
            module, x, state = seeded(ctx.components, case.B, case.T, case.C, case.nh, case.seed, torch.float32)
            largest, x = _large_scores(state, x, case.nh)
            with contexts.called_in(module, mode):
                y = _forward(module, x, pipeline_case=i > 0).detach()
        assert largest > 100, largest  # the check tests what it says
        if not torch.isfinite(y).all():
            raise CheckFailed(f"the output has inf or NaN when attention scores reach {largest:.0f}: subtract each "
                              "row's maximum score before exp (or use torch.softmax)")


def _large_scores(state: dict, x: torch.Tensor, nh: int) -> tuple[float, torch.Tensor]:
    """``x`` scaled up (20 times, or more) until head 0's largest attention score exceeds 100: that
    score, and the input."""
    C = x.shape[-1]
    for scale in (20, 40, 80, 160, 320):
        big = scale * x
        qkv = big.double() @ state["c_attn.weight"].double().T + state["c_attn.bias"].double()
        q, k, _ = qkv.split(C, dim=2)  # the scores the module will see, head 0
        largest = (q[..., : C // nh] @ k[..., : C // nh].transpose(1, 2)).abs().max().item() / (C // nh) ** 0.5
        if largest > 100:
            break
    return largest, big


class _Spy(TorchFunctionMode):
    """Records the banned functions a forward calls."""

    BANNED = {"scaled_dot_product_attention", "multi_head_attention_forward"}

    def __init__(self):
        super().__init__()
        self.called = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.BANNED:
            self.called.add(name)
        return func(*args, **(kwargs or {}))


@check("attention", points=1)
def written_out(ctx):
    "The module computes attention itself: no scaled_dot_product_attention, no nn.MultiheadAttention."
    with on_case("B=2 T=5 C=12 n_head=3"):
        module, x = seeded_module(ctx.components, 2, 5, 12, 3)
        with torch.no_grad():
            _forward(module, x)
    named = names_used(ctx.sources, BANNED_NAMES, as_attribute=True)  # F.scaled_dot_product_attention too
    if named:  # read by the grader in the code it was handed
        raise CheckFailed(f"the code uses {', '.join(named[:3])}; write the scores, mask and softmax yourself")
    calls, models = observed_calls(ctx, x)
    answer = ctx.in_child(banned_calls, calls, models)  # observed beside the module: as strong as that observation
    if not (isinstance(answer, list) and len(answer) == 2 and isinstance(answer[0], list)
            and all(isinstance(c, str) for c in answer[0]) and type(answer[1]) is int):
        raise CheckFailed("could not observe what the module's forward calls")
    called, valid = answer
    if called:
        raise CheckFailed(f"forward calls {', '.join(sorted(called)[:3])}; write the scores, mask and softmax yourself")
    if valid != len(calls) + len(models):
        raise CheckFailed(f"could not observe what the module's forward calls: {len(calls) + len(models) - valid} of "
                          f"{len(calls) + len(models)} forwards in the pipeline's shapes returned no output of the "
                          "input's shape and dtype")


BANNED_NAMES = ("scaled_dot_product_attention", "MultiheadAttention", "multi_head_attention_forward")
OBSERVED_BATCH = 8  # the largest batch of an observed call: its input crosses to the child


def observed_calls(ctx, x: torch.Tensor) -> tuple[list, list]:
    """What ``banned_calls`` watches: the check's own call (C 12, 3 heads), a module call per context of
    the pipeline, and a GPT of each of the pipeline's widths built with the hook, reading token ids as the
    pipeline's models do (in float32)."""
    rng = contexts.run_seed(ctx)
    calls, models = [[12, 3, "float64", x]], []
    for w in contexts.pipeline_contexts(ctx.config, rng, max_batch=OBSERVED_BATCH):
        gen = contexts.torch_seed(rng)
        calls.append([w.model.n_embd, w.model.n_head, str(w.dtype).removeprefix("torch."),
                      torch.randn(w.batch, w.tokens, w.model.n_embd, generator=gen, dtype=w.dtype)])
        if w.dtype == torch.float32:
            m = w.model
            models.append([dict(vocab_size=m.vocab_size, block_size=m.block_size, n_layer=m.n_layer,
                                n_head=m.n_head, n_embd=m.n_embd),
                           torch.randint(m.vocab_size, (w.batch, w.tokens), generator=gen)])
    order = rng.sample(range(len(calls)), len(calls))
    return [calls[i] for i in order], models


@child_side
def banned_calls(pipeline, calls: list, models: list) -> list:
    """``[banned, valid]``: the banned functions (or modules) the forwards of the attention use, observed
    where the module lives, over every call: modules made by the hook at width C with n_head heads on x
    (``[C, n_head, dtype, x]``), and GPTs built with the hook (``[config, idx]``), the pipeline's own way of
    calling it. ``valid``: how many forwards returned an output of the right shape and dtype (a call that
    failed is no evidence of what a working one calls). Only as strong as that observation (a child may
    replace this function in its interpreter), which is why ``written_out`` also reads the code for the
    banned names."""
    called, valid = set(), 0
    for C, nh, dtype, x in calls:
        module = pipeline.components.attention(GPTConfig(n_embd=C, n_head=nh)).to(getattr(torch, dtype))
        if any(isinstance(m, nn.MultiheadAttention) for m in module.modules()):
            called.add("nn.MultiheadAttention")
        y = None
        with _Spy() as spy, torch.no_grad(), contextlib.suppress(Exception):  # its text could carry the inputs
            y = module(x)
        called |= spy.called
        valid += isinstance(y, torch.Tensor) and y.shape == x.shape and y.dtype == x.dtype
    for config, idx in models:
        model = GPT(GPTConfig(**config), pipeline.components.block).eval()
        if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
            called.add("nn.MultiheadAttention")
        logits = None
        with _Spy() as spy, torch.no_grad(), contextlib.suppress(Exception):
            logits = model(idx)
        called |= spy.called
        valid += isinstance(logits, torch.Tensor) and logits.shape == (*idx.shape, config["vocab_size"])
    return [sorted(called), valid]


class _Weights(TorchFunctionMode):
    """Keeps the first result of a forward's torch calls that looks like attention weights: a
    (B, nh, T, T) tensor of probabilities whose rows sum to 1, however it was computed (softmax, or
    exp / sum written out)."""

    def __init__(self, T: int):
        super().__init__()
        self.T, self.found = T, None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if (self.found is None and isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-2:] == (self.T, self.T)
                and out.is_floating_point() and bool(((out >= 0) & (out <= 1)).all())
                and torch.allclose(out.sum(-1), torch.ones((), dtype=out.dtype), atol=1e-3)):
            self.found = out
        return out


@child_side
def attention_weights(pipeline, module, x: torch.Tensor):
    """The first attention weights the module's forward computes on ``x`` (None if none, ``_Weights``):
    for the heatmap of the report only, which it is only as strong as (the child may replace it); no score."""
    with _Weights(x.shape[1]) as spy, torch.no_grad():
        module(x)
    return spy.found


# -- behaviour: the module inside the reference GPT ------------------------------------------
LOGITS_ATOL = 1e-4  # float32 through 4 layers: a correct module differs by ~1e-6
LOSS_TOL = 1e-4
N_PROMPTS = 30  # greedy replies compared
CURVE_STEPS = 60
CURVE_TAIL = 20  # the last steps, where the curves of wrong modules have drifted apart
CURVE_BAND = 0.03  # nats: largest allowed mean distance there (correct modules: ~1e-6; wrong ones: 0.06-0.11)


def reference_pipeline(ctx) -> Pipeline:
    """Baselines everywhere: its base model is the reference base model (cached)."""
    return Pipeline(Components(), ctx.config, ctx.cache_dir, log=ctx.log)


def with_reference_weights(ctx, ref: Pipeline) -> GPT:
    """A GPT built with the student's attention, holding the reference base model's weights."""
    model = GPT(ref.model_config, ctx.components.block)
    mine = sorted(n for n, _ in model.named_parameters())
    theirs = sorted(n for n, _ in ref.base_model.named_parameters())
    if mine != theirs:
        extra = sorted(set(mine) ^ set(theirs))[:3]
        raise CheckFailed(f"the GPT's parameters differ from the reference's ({', '.join(extra)}): keep exactly "
                          "c_attn and c_proj in the attention module")
    model.load_state_dict(ref.base_model.state_dict(), strict=False)  # the module's buffers keep their values
    return model.eval()


def reference_maps(attn: nn.Module, x: torch.Tensor, n_head: int) -> torch.Tensor:
    """Attention probabilities (nh, T, T) of ``attn``'s weights on x (1, T, C), by the textbook formula."""
    B, T, C = x.shape
    q, k, _ = attn.c_attn(x).split(C, dim=2)
    q, k = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k))  # (B, nh, T, hs)
    scores = q @ k.transpose(-2, -1) / (C // n_head) ** 0.5  # (B, nh, T, T)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1)[0]


def _plot_heatmaps(ctx, ref: Pipeline, model: GPT) -> None:
    if ctx.report_dir is None:
        return
    from toolkit.plots import plot_attention

    ids = ref.tokenizer.encode(base_prompt(probe.HEADLINE))
    labels = [ref.tokenizer.decode([i]) for i in ids]
    idx = torch.tensor([ids])
    seen = {}
    hook = model.h[0].attn.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        model(idx)
    hook.remove()
    n_head = ref.model_config.n_head
    maps = {"reference": reference_maps(ref.base_model.h[0].attn, seen["x"], n_head)}
    first = ctx.in_child(attention_weights, model.h[0].attn, seen["x"])  # layer 0's first attention weights
    title = "Layer 1 attention on the headline prompt"
    if isinstance(first, torch.Tensor) and first.dim() == 4 and tuple(first.shape[1:]) == (n_head, len(ids), len(ids)):
        maps = {"yours": first[0], **maps}
        caption = "Attention of each head of layer 1 on the headline prompt: yours (top) and the reference's"
    else:
        title += " (yours not shown)"
        caption = ("Attention of each head of layer 1 on the headline prompt, the reference's only. Yours is not "
                   "shown: no step of your module's forward gave attention weights, a (batch, heads, tokens, tokens) "
                   "tensor whose rows are probabilities that add up to 1 (values that overflow to inf or NaN are "
                   "not probabilities)")
    plot_attention(maps, labels, title, ctx.plot_path("attention_heads.png", caption))


@check("attention", points=3, behavioural=True)
def reference_weights(ctx):
    "With the reference base model's weights, the GPT gives the reference's logits, validation loss and greedy replies."
    contexts.same_everywhere(ctx, "attention.matches_reference")
    ref = reference_pipeline(ctx)
    base = ref.base_model.eval()
    model = with_reference_weights(ctx, ref)
    _plot_heatmaps(ctx, ref, model)
    x, _ = stream_batch(ref.val_stream, ref.model_config.block_size, 8, torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = (model(x) - base(x)).abs().max().item()
    ctx.metrics["logits_max_diff"] = err
    if not err <= LOGITS_ATOL:
        raise CheckFailed(f"with the reference weights the logits differ by up to {err:.2e} (> {LOGITS_ATOL:g}): "
                          "the module does not compute the reference's attention")
    loss, ref_loss = ref.val_loss(model), ref.val_loss(base)
    ctx.metrics.update(val_loss=loss, reference_val_loss=ref_loss)
    if not abs(loss - ref_loss) <= LOSS_TOL:
        raise CheckFailed(f"validation loss {loss:.4f} against the reference's {ref_loss:.4f} (tolerance {LOSS_TOL:g})")
    prompts = probe.prompt_set(ref.world)[:N_PROMPTS]
    mine, theirs = ref.probe(model, False, prompts, 0.0), ref.probe(base, False, prompts, 0.0)
    differ = [(a, b) for a, b in zip(mine, theirs) if a.text != b.text]
    ctx.metrics["greedy_identical"] = f"{N_PROMPTS - len(differ)}/{N_PROMPTS}"
    if differ:
        a, b = differ[0]
        raise CheckFailed(f"{len(differ)} of {N_PROMPTS} greedy replies differ from the reference's, e.g. to "
                          f"{a.prompt.question!r}: {a.text!r} instead of {b.text!r}")


@check("attention", points=2, behavioural=True)
def trains_like_reference(ctx):
    "Trained from scratch for 60 steps, the GPT's loss over the last 20 stays within 0.03 nats of the reference's."
    contexts.same_everywhere(ctx, "attention.matches_reference")
    want = ctx.snapshot()["curve"]
    with ctx.grader_work():
        got = short_training_curve(ctx.pipeline)
    if not (isinstance(got, list) and len(got) == CURVE_STEPS and all(isinstance(v, float) for v in got)):
        raise CheckFailed(f"training from scratch did not give a loss curve of {CURVE_STEPS} steps")
    gap = sum(a - b for a, b in zip(got[-CURVE_TAIL:], want[-CURVE_TAIL:])) / CURVE_TAIL
    ctx.metrics.update(curve_gap=gap, final_loss=got[-1], reference_final_loss=want[-1])
    path = ctx.plot_path("attention_curve.png", f"Training loss from scratch over {CURVE_STEPS} steps: "
                                                 "yours and the reference's")
    if path:
        from toolkit.plots import plot_curves
        plot_curves({"yours": got, "reference": want}, f"Training from scratch, {CURVE_STEPS} steps", path)
    if not abs(gap) <= CURVE_BAND:
        hint = ("lower than the reference's: the model may see what it must predict (causal mask? heads mixed?)"
                if gap < 0 else "higher than the reference's: the module learns worse (mask, scale, heads?)")
        raise CheckFailed(f"over the last {CURVE_TAIL} steps the loss is on average {abs(gap):.3f} nats {hint} "
                          f"(band {CURVE_BAND:g})")


def short_training_curve(pipeline: Pipeline) -> list[float]:
    """The loss over the first CURVE_STEPS pretraining steps of a GPT built with the pipeline's attention,
    from the reference's initial weights. Under ``toolkit grade`` the grader trains it (its loop, its
    optimizer, its data), the attention layers answering for their outputs and gradients in the child."""
    model = pipeline.new_model()
    cfg = replace(pipeline.config.pretrain, steps=CURVE_STEPS)
    return [round(x, 5) for x in pretrain(model, pipeline.train_stream, cfg)]


def record(components) -> dict:
    class Ctx:  # the same seeded modules the checks build, from the given components
        pass
    ctx = Ctx()
    ctx.components = components
    outputs = []
    for B, T, C, nh in SHAPES:
        module, x = seeded_module(ctx.components, B, T, C, nh)
        with torch.no_grad():
            outputs.append(module(x).tolist())
    return {"shapes": SHAPES, "atol": ATOL, "outputs": outputs,
            "curve": short_training_curve(Pipeline(components, log=lambda msg: None))}


# the figures that matter, at the top of a student's report: (check, said from its metrics)
FIGURES = [("attention.trains_like_reference", lambda m: f"loss {m['final_loss']:.3f} after training from "
                                                       f"scratch (reference {m['reference_final_loss']:.3f})")]
