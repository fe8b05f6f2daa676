"""Checks of the block component (a pre-norm GPT-2 block around a given attention)."""

from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from graders import calibration, contexts
from toolkit import probe
from toolkit.checks import CheckFailed, check, on_case
from toolkit.model import GPT, Block, GPTConfig, SDPAttention
from toolkit.pipeline import Pipeline
from toolkit.plugins import Components
from toolkit.train import pretrain, stream_batch

# (B, T, C, n_head): batch 1 and more, T = 1, one head and many
SHAPES = [(1, 1, 8, 2), (2, 5, 12, 3), (3, 7, 16, 1), (2, 6, 24, 8)]
ATOL = 1e-9  # float64
ATOL32 = 1e-5  # float32, against the reference in float64: a correct block differs by ~1e-6 at width 128
FLOAT32_CASES = [(2, 64, 128, 4), (1, 9, 16, 4)]  # (B, T, C, n_head), the first at the pipeline's width
ATTENTION_MOVES = 1e-6  # a one-head attention passed in moves the reference's output by 2.0 (uses_given_attention)


def contract(C: int) -> dict[str, tuple[int, ...]]:
    """The block's parameters at width C, named and shaped as ``toolkit_block`` says."""
    return {"ln_1.weight": (C,), "ln_1.bias": (C,), "attn.c_attn.weight": (3 * C, C), "attn.c_attn.bias": (3 * C,),
            "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,), "ln_2.weight": (C,), "ln_2.bias": (C,),
            "mlp.c_fc.weight": (4 * C, C), "mlp.c_fc.bias": (4 * C,), "mlp.c_proj.weight": (C, 4 * C),
            "mlp.c_proj.bias": (C,)}


def seeded_state(C: int, seed: int) -> dict[str, torch.Tensor]:
    """Weights for every parameter of the contract (float64): LayerNorms away from γ = 1, β = 0, so
    that the checks see them."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in contract(C).items():
        w = torch.randn(shape, generator=gen, dtype=torch.float64)
        if name.startswith("ln_"):
            state[name] = 1 + 0.2 * w if name.endswith("weight") else 0.2 * w
        else:
            state[name] = w / shape[-1] ** 0.5 if name.endswith("weight") else 0.1 * w
    return state


def build(components, C: int, nh: int, attention_heads: int | None = None) -> nn.Module:
    """The submission's block at width C with n_head ``nh``, around a fresh reference attention of the
    grader's (``attention_heads`` heads: by default config's)."""
    attention = SDPAttention(GPTConfig(n_embd=C, n_head=attention_heads or nh))
    block = components.block(GPTConfig(n_embd=C, n_head=nh), attention=attention)
    if not isinstance(block, nn.Module):
        raise CheckFailed(f"toolkit_block returned {type(block).__name__}; expected an nn.Module")
    return block


def seeded(components, case: "Case", attention_heads: int | None = None):
    """The submission's block holding ``seeded_state``, in the case's dtype, and an input (B, T, C)."""
    block = build(components, case.C, case.nh, attention_heads)
    state = seeded_state(case.C, case.seed)
    mine = sorted(n for n, _ in block.named_parameters())
    if mine != sorted(state):
        raise CheckFailed(f"the block's parameters are {mine[:4]}...; expected exactly those of toolkit_block's "
                          "contract (ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj)")
    block = block.to(case.dtype)
    block.load_state_dict({k: v.to(case.dtype) for k, v in state.items()}, strict=False)
    x = torch.randn(case.B, case.T, case.C, generator=torch.Generator().manual_seed(case.seed + 1), dtype=torch.float64)
    return block, x.to(case.dtype), state


@dataclass(frozen=True)
class Case:
    B: int
    T: int
    C: int
    nh: int
    seed: int = 0
    dtype: torch.dtype = torch.float64

    def __str__(self) -> str:
        dtype = "" if self.dtype == torch.float64 else f" in {str(self.dtype).removeprefix('torch.')}"
        return f"B={self.B} T={self.T} C={self.C} n_head={self.nh}{dtype}"


def reference(state: dict, x: torch.Tensor, nh: int, attention_heads: int | None = None) -> Block:
    """The toolkit's block (``toolkit.model.Block``) holding ``state``, in float64."""
    C = x.shape[-1]
    ref = Block(GPTConfig(n_embd=C, n_head=nh), SDPAttention(GPTConfig(n_embd=C, n_head=attention_heads or nh)))
    ref = ref.double()
    ref.load_state_dict(state)
    return ref


def forward(block, x):
    y = block(x)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape or y.dtype != x.dtype:
        got = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise CheckFailed(f"forward of an input {tuple(x.shape)} {x.dtype} returned {got}; expected the same shape "
                          "(B, T, C) and dtype")
    return y


# -- the textbook block, and its classic mistakes ---------------------------------------------
def layer_norm(x, w, b, dim: int = -1, unbiased: bool = False):
    mean = x.mean(dim, keepdim=True)
    var = x.var(dim, keepdim=True, unbiased=unbiased)
    return w * (x - mean) / torch.sqrt(var + 1e-5) + b


def textbook(state: dict, x: torch.Tensor, nh: int, norm: str = "pre", residual: tuple = (True, True),
             unbiased: bool = False, ln_dim: int = -1, gelu: str = "none") -> torch.Tensor:
    """The block with weights ``state`` on x (B, T, C) in float64, or with one classic mistake: ``norm="post"``,
    a branch without its residual, the unbiased variance, the LayerNorm over another axis, the tanh GELU."""
    x = x.double()
    s = {k: v.double() for k, v in state.items()}
    attn = SDPAttention(GPTConfig(n_embd=x.shape[-1], n_head=nh)).double()
    attn.load_state_dict({k.removeprefix("attn."): v for k, v in s.items() if k.startswith("attn.")})

    def ln(h, i):
        return layer_norm(h, s[f"ln_{i}.weight"], s[f"ln_{i}.bias"], ln_dim, unbiased)

    def mlp(h):
        h = F.gelu(h @ s["mlp.c_fc.weight"].T + s["mlp.c_fc.bias"], approximate=gelu)
        return h @ s["mlp.c_proj.weight"].T + s["mlp.c_proj.bias"]

    with torch.no_grad():
        if norm == "post":
            x = ln(x + attn(x), 1)
            return ln(x + mlp(x), 2)
        x = x * residual[0] + attn(ln(x, 1))
        return x * residual[1] + mlp(ln(x, 2))


MISTAKES = [  # (the textbook with one classic mistake, what the reason says), the most common first
    (dict(norm="post"), "post-norm: the LayerNorm comes after the residual sum; normalise the input of each branch "
                        "instead, x + attn(ln_1(x))"),
    (dict(residual=(False, True)), "a missing residual: the attention's output replaces x; add it, x + attn(ln_1(x))"),
    (dict(residual=(True, False)), "a missing residual: the MLP's output replaces x; add it, x + mlp(ln_2(x))"),
    (dict(unbiased=True), "the LayerNorm uses the unbiased variance (divided by C - 1): LayerNorm divides by C, "
                          "var(unbiased=False)"),
    (dict(ln_dim=1), "the LayerNorm runs over the wrong axis (time, dim 1): normalise each position over its "
                     "channels, the last axis"),
    (dict(gelu="tanh"), "the tanh GELU: use the exact one, F.gelu(h) (erf), not approximate='tanh'"),
]
MISTAKE_ATOL = {torch.float64: 1e-7, torch.float32: 1e-4}


def name_mistake(state: dict, x: torch.Tensor, nh: int, got: torch.Tensor) -> str:
    for mistake, says in MISTAKES:
        if (got.double() - textbook(state, x, nh, **mistake)).abs().max().item() <= MISTAKE_ATOL[got.dtype]:
            return says
    return ("it is none of the classic mistakes (post-norm, a missing residual, LayerNorm's variance or axis, the "
            "tanh GELU): compare each step with x + attn(ln_1(x)), then x + mlp(ln_2(x))")


# -- unit checks -------------------------------------------------------------------------------
@check("block", points=1)
def parameters(ctx):
    "Parameters named and shaped as the contract says (ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj), the LayerNorms starting at γ = 1, β = 0."
    C, nh = 16, 4
    with on_case(f"C={C} n_head={nh}"):
        block = build(ctx.components, C, nh)
    mine, want = {n: tuple(p.shape) for n, p in block.named_parameters()}, contract(C)
    if mine != want:
        wrong = sorted(n for n in set(mine) | set(want) if mine.get(n) != want.get(n))[:3]
        says = ", ".join(f"{n} {mine.get(n, 'missing')} (expected {want.get(n, 'none')})" for n in wrong)
        raise CheckFailed(f"the block's parameters differ from the contract at C={C}: {says}")
    initial = ctx.initial_parameters(block)  # under toolkit grade, the values the block holds in the child
    for name in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias"):
        value, expected = initial[name], 1.0 if name.endswith("weight") else 0.0
        if not bool((value == expected).all()):
            what = "γ (weight)" if name.endswith("weight") else "β (bias)"
            why = ("γ initialised to zero switches the branch off at the start" if expected == 1 and
                   bool((value == 0).all()) else f"{what.split()[0]} must start at {expected:g}")
            raise CheckFailed(f"{name.split('.')[0]}'s {what} starts at {value.mean().item():g} on average, not "
                              f"{expected:g}: {why}; keep nn.LayerNorm's defaults, γ = 1 and β = 0")


def case_at(w: contexts.Where, rng) -> Case:
    """The case of one context of the pipeline's (``graders.contexts``), its weights and input seeded by ``rng``."""
    return Case(w.batch, w.tokens, w.model.n_embd, w.model.n_head, rng.getrandbits(31), w.dtype)


def pipeline_cases(ctx, rng, max_batch: int | None = None) -> list[Case]:
    """A case per model width of the pipeline (``graders.contexts``: n_embd 128 and 4 heads, 64 and 2),
    in float32 as the pipeline runs its blocks, a batch size (at most ``max_batch``) and a length drawn by ``rng``."""
    return [case_at(w, rng)
            for w in contexts.pipeline_contexts(ctx.config, rng, dtypes=(torch.float32,), max_batch=max_batch)]


@check("block", points=3)
def matches_reference(ctx):
    "Same output as the reference block on seeded weights and inputs, for several shapes and the pipeline's contexts, with gradients on and off, in train and eval mode (float64, atol 1e-9; float32, atol 1e-5)."
    expected = ctx.snapshot()["outputs"]
    rng = contexts.run_seed(ctx)
    own = [Case(*s) for s in SHAPES] + [Case(*s, seed=7, dtype=torch.float32) for s in FLOAT32_CASES]
    exact = [(case_at(w, rng), mode) for w, mode in contexts.pipeline_calls(ctx.config)]  # as the pipeline calls it
    cases = list(enumerate(contexts.with_modes(rng, own, pipeline_cases(ctx, rng)) + exact))

    def judge(numbered) -> None:
        i, (case, mode) = numbered
        with on_case(str(case)) if i < len(own) else contexts.message_hidden(f"{case}, {mode}"):
            block, x, state = seeded(ctx.components, case)
            with contexts.called_in(block, mode):
                got = forward(block, x).detach()
        if i < len(expected):
            want = torch.tensor(expected[i], dtype=torch.float64)
        else:
            with torch.no_grad():
                want = reference(rounded(state, case.dtype), x.double(), case.nh)(x.double())
        err, tol = (got.double() - want).abs().max().item(), ATOL if case.dtype == torch.float64 else ATOL32
        if not err <= tol:
            raise CheckFailed(f"output differs from the reference by {err:.2e} (> {tol:g}) {mode}, for {case}: "
                              f"{name_mistake(state, x, case.nh, got)}")

    contexts.judged_everywhere(ctx, cases, judge, said=lambda numbered: f"{numbered[1][0]}, {numbered[1][1]}",
                               counts=lambda numbered: contexts.telling(numbered[1][0].B, numbered[1][0].T, numbered[1][0].nh))


def rounded(state: dict, dtype: torch.dtype) -> dict:
    """The weights as a block in ``dtype`` holds them (float64 again): what its output is judged on."""
    return {k: v.to(dtype).double() for k, v in state.items()}


@check("block", points=1)
def causal(ctx):
    "Output at position t does not change when tokens after t change (float64, atol 1e-9; and the pipeline's contexts, float32, atol 1e-5), with gradients on and off, in train and eval mode."
    rng = contexts.run_seed(ctx)
    own = [Case(2, 8, 16, 4, seed=1)]
    for i, (case, mode) in enumerate(contexts.with_modes(rng, own, pipeline_cases(ctx, rng, max_batch=SMALL_BATCH))):
        positions = range(case.T - 1) if i == 0 else sorted(rng.sample(range(case.T - 1), min(3, case.T - 1)))
        with on_case(str(case)) if i == 0 else contexts.message_hidden(f"{case}, {mode}"):
            block, x, state = seeded(ctx.components, case)
            with contexts.called_in(block, mode):
                y, moved = _moved(block, x, positions)
        if moved is not None:
            t, diff = moved
            leak = (y - textbook(state, x, case.nh, ln_dim=1)).abs().max().item() <= MISTAKE_ATOL[x.dtype]
            why = ("the LayerNorm runs over the time axis (dim 1), which mixes in later positions: normalise "
                   "over the channels, the last axis" if leak else "only the attention may mix positions, "
                   "and causally: the LayerNorms and the MLP work on each position alone")
            where = f" ({case}, {mode})" if i > 0 else ""
            raise CheckFailed(f"output at position {t} changed by {diff:.2e} when only tokens after {t} "
                              f"changed{where}: {why}")


SMALL_BATCH = 8  # the largest batch of the pipeline's contexts in ``causal`` and ``gradients``


def _moved(block, x: torch.Tensor, positions) -> tuple[torch.Tensor, tuple[int, float] | None]:
    """The block's output on x, and (t, by how much) for the first t of ``positions`` whose outputs up
    to t moved, beyond the tolerance of x's dtype, when the tokens after t changed (None: none did)."""
    B, T, C = x.shape
    tol = ATOL if x.dtype == torch.float64 else ATOL32
    y = forward(block, x).detach()
    for t in positions:
        x2 = x.clone()
        x2[:, t + 1:] += torch.randn(B, T - t - 1, C, dtype=torch.float64,
                                     generator=torch.Generator().manual_seed(t)).to(x.dtype)
        diff = (forward(block, x2).detach()[:, : t + 1] - y[:, : t + 1]).abs().max().item()
        if not diff <= tol:  # "not <=" so that NaN fails too
            return y, (t, diff)
    return y, None


@check("block", points=2)
def gradients(ctx):
    "Backward gives the gradients of the block's own forward: the input's and every parameter's, against central differences (float64) and, in the pipeline's contexts, the reference's (float32, 1e-4 of the largest), in train and eval mode."
    rng = contexts.run_seed(ctx)
    own = [Case(2, 5, 12, 3, seed=2)]
    for i, (case, mode) in enumerate(contexts.with_modes(rng, own, pipeline_cases(ctx, rng, max_batch=SMALL_BATCH))):
        mode = contexts.Mode(True, mode.train)  # gradients on: the pipeline's training
        if i == 0:
            weights = torch.randn(case.B, case.T, case.C, dtype=torch.float64,
                                  generator=torch.Generator().manual_seed(3))
            with on_case(str(case)):
                grads, wrong = _own_gradients(ctx, case, mode, weights)
        else:
            weights = torch.randn(case.B, case.T, case.C, dtype=torch.float64, generator=contexts.torch_seed(rng))
            with contexts.message_hidden(f"{case}, {mode}"):
                grads, wrong = _pipeline_gradients(ctx, case, mode, weights)
        if wrong:
            raise CheckFailed(_gradient_failure(wrong, grads, "" if i == 0 else f" ({case}, {mode})"))


GRAD_EPS = 1e-6  # float64 central differences: error ~1e-9 here
GRAD_TOL = 1e-5
GRAD_TOL32 = 1e-4  # float32 gradients, relative to the largest of the reference's: correct blocks' differ by < 1e-6
DIFF_TOL32 = 1e-3  # float32 gradients against float64 central differences: wrong forwards' differ by up to 1.5e-5


def _backward(block, x: torch.Tensor, weights: torch.Tensor, mode) -> tuple[torch.Tensor, dict]:
    """The output of ``block`` on x, and the gradients of sum(block(x) * weights) in float64: the input's
    and each parameter's (None: none)."""
    x = x.clone().requires_grad_(True)
    with contexts.called_in(block, mode):
        y = forward(block, x)
        (y * weights.to(x.dtype)).sum().backward()
    grads = {"the input": x.grad, **{n: p.grad for n, p in block.named_parameters()}}
    return y.detach(), {n: g.double() if isinstance(g, torch.Tensor) else None for n, g in grads.items()}


def _own_gradients(ctx, case: Case, mode, weights: torch.Tensor) -> tuple[dict, str | None]:
    """The check's own case: the gradients, and what differs (None: nothing) when each is compared with
    central differences of the block's own forward (float64)."""
    block, x, state = seeded(ctx.components, case)
    _, grads = _backward(block, x, weights, mode)
    return grads, _against_differences(block, state, x, weights, grads, mode.train, GRAD_TOL, [[n] for n in grads])


def _pipeline_gradients(ctx, case: Case, mode, weights: torch.Tensor) -> tuple[dict, str | None]:
    """A context of the pipeline's (float32): the gradients, and what differs (None: nothing) when they are
    compared with the reference's where the block's output is the reference's; else, all together, with
    central differences of its own forward in float64 (a wrong forward is ``matches_reference``'s business;
    here, only whether backward follows it)."""
    block, x, state = seeded(ctx.components, case)
    y, grads = _backward(block, x, weights, mode)
    ref = reference(rounded(state, case.dtype), x, case.nh)
    want_y, want = _backward(ref, x.double(), weights, mode)
    if not (y.double() - want_y).abs().max().item() <= ATOL32:
        block64, x64, state64 = seeded(ctx.components, replace(case, dtype=torch.float64))
        return grads, _against_differences(block64, state64, x64, weights, grads, mode.train, DIFF_TOL32, [list(grads)])
    for name, g in grads.items():
        error = (g - want[name]).abs().max().item() if g is not None and g.shape == want[name].shape else float("inf")
        if not error <= GRAD_TOL32 * max(1.0, want[name].abs().max().item()):
            return grads, (f"the gradient of {name} differs from the reference block's by {error:.2e}, though the "
                           "outputs agree")
    return grads, None


def _against_differences(block, state: dict, x: torch.Tensor, weights: torch.Tensor, grads: dict, train: bool,
                         tol: float, groups: list[list[str]]) -> str | None:
    """What differs (None: nothing) when ``grads`` along a random direction of each group of names (the input,
    parameters) are compared with the central difference of the block's own forward (float64, holding ``state``)."""
    directions = {name: torch.randn(x.shape if name == "the input" else state[name].shape, dtype=torch.float64,
                                    generator=torch.Generator().manual_seed(10 + i)) for i, name in enumerate(grads)}
    for group in groups:
        v = {name: directions[name] for name in group}
        numeric = (_loss(block, state, x, weights, v, GRAD_EPS, train)
                   - _loss(block, state, x, weights, v, -GRAD_EPS, train)) / (2 * GRAD_EPS)
        analytic = sum((grads[n] * v[n]).sum().item() for n in group
                       if isinstance(grads[n], torch.Tensor) and grads[n].shape == v[n].shape)
        if not abs(analytic - numeric) <= tol * max(1.0, abs(numeric)):
            what = group[0] if len(group) == 1 else "the input and every parameter together"
            return (f"the gradient of {what} along a random direction is {analytic:.6g}, but the output moves by "
                    f"{numeric:.6g}")
    return None


def _gradient_failure(says: str, grads: dict, where: str) -> str:
    """The reason of ``gradients``: a detached branch if some of ``grads`` are missing, else what differs."""
    none = [n for n, g in grads.items() if g is None or not bool(g.abs().sum() > 0)]
    if none:
        branch = "MLP" if any(n.startswith(("mlp.", "ln_2.")) for n in none) else "attention"
        return (f"{', '.join(none[:3])} get no gradient{where}, though the output depends on them: a detached "
                f"branch (.detach() on the {branch} branch cuts the gradients of everything inside it)")
    return (f"{says}{where}: backward does not follow the forward (a custom autograd Function, or a tensor modified "
            "in place?)")


def _loss(block, state: dict, x: torch.Tensor, weights: torch.Tensor, moves: dict, eps: float, train: bool) -> float:
    """The check's scalar, sum(block(x) * weights), with each name of ``moves`` (a parameter, or "the input")
    moved by eps times its direction; under torch.no_grad(), in train or eval mode."""
    block.load_state_dict({**state, **{n: state[n] + eps * v for n, v in moves.items() if n in state}}, strict=False)
    with contexts.called_in(block, contexts.Mode(False, train)):
        y = forward(block, x + eps * moves["the input"] if "the input" in moves else x)
    block.load_state_dict(state, strict=False)
    return (y.double() * weights).sum().item()


@check("block", points=1)
def uses_given_attention(ctx):
    "The block keeps the attention passed in: with the same weights, a one-head attention passed in changes its output from a four-head one's."
    case = Case(2, 6, 16, 4, seed=4)
    with on_case(str(case)):
        block, x, _ = seeded(ctx.components, case)
        with torch.no_grad():
            four = forward(block, x)
    with on_case(f"{case}, a one-head attention passed in"):
        block, x, _ = seeded(ctx.components, case, attention_heads=1)
        with torch.no_grad():
            one = forward(block, x)
    moved = (one - four).abs().max().item()
    if not moved > ATTENTION_MOVES:
        raise CheckFailed(f"around a one-head attention passed in, the output is that of a four-head one (they differ "
                          f"by {moved:.1e}): the block builds an attention of its own from config; keep the one "
                          "passed in, self.attn = attention")


# -- behaviour: the blocks inside the reference GPT ---------------------------------------------
LOGITS_ATOL = 1e-4  # float32 through 4 layers: a correct block differs by ~1e-6
LOSS_TOL = 1e-4
N_PROMPTS = 12  # greedy replies compared (a GPT of the student's blocks generates without the KV cache)
CURVE_STEPS = 40
CURVE_TAIL = 10
CURVE_MARGIN = 0.05  # nats added to the worst seed's gap (benchmarks/sweep_block.py)


def with_reference_weights(ctx, ref: Pipeline) -> GPT:
    model = GPT(ref.model_config, ctx.components.block)
    mine = sorted(n for n, _ in model.named_parameters())
    theirs = sorted(n for n, _ in ref.base_model.named_parameters())
    if mine != theirs:
        extra = sorted(set(mine) ^ set(theirs))[:3]
        raise CheckFailed(f"the GPT's parameters differ from the reference's ({', '.join(extra)}): name the block's "
                          "submodules ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj")
    model.load_state_dict(ref.base_model.state_dict(), strict=False)
    return model.eval()


@check("block", points=3, behavioural=True)
def reference_weights(ctx):
    "With the reference base model's weights, the GPT of your blocks gives the reference's logits, validation loss and greedy replies."
    contexts.same_everywhere(ctx, "block.matches_reference")
    ref = Pipeline(Components(), ctx.config, ctx.cache_dir, log=ctx.log)
    base = ref.base_model.eval()
    model = with_reference_weights(ctx, ref)
    x, _ = stream_batch(ref.val_stream, ref.model_config.block_size, 8, torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = (model(x) - base(x)).abs().max().item()
    ctx.metrics["logits_max_diff"] = err
    if not err <= LOGITS_ATOL:
        raise CheckFailed(f"with the reference weights the logits differ by up to {err:.2e} (> {LOGITS_ATOL:g}): "
                          "the block does not compute the reference's")
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


def curve_band() -> float:
    """The largest allowed mean gap over the curve's tail: the worst seed's, plus CURVE_MARGIN."""
    return calibration.at_most("block_seed_gap", CURVE_MARGIN)


@check("block", points=2, behavioural=True)
def trains_like_reference(ctx):
    "Trained from scratch for 40 steps, the GPT's loss over the last 10 stays within a band of the reference's (the seed sweep's worst gap + 0.05 nats)."
    contexts.same_everywhere(ctx, "block.matches_reference")
    want, band = ctx.snapshot()["curve"], curve_band()
    with ctx.grader_work():
        got = short_training_curve(ctx.pipeline)
    if not (isinstance(got, list) and len(got) == CURVE_STEPS and all(isinstance(v, float) for v in got)):
        raise CheckFailed(f"training from scratch did not give a loss curve of {CURVE_STEPS} steps")
    gap = tail_gap(got, want)
    ctx.metrics.update(curve_gap=gap, final_loss=got[-1], reference_final_loss=want[-1])
    path = ctx.plot_path("block_curve.png", f"Training loss from scratch over {CURVE_STEPS} steps: yours and the "
                                            "reference's")
    if path:
        from toolkit.plots import plot_curves
        plot_curves({"yours": got, "reference": want}, f"Training from scratch, {CURVE_STEPS} steps", path)
    if not abs(gap) <= band:
        hint = ("higher than the reference's: the block learns worse (a detached branch, a missing residual, "
                "post-norm?)" if gap > 0 else "lower than the reference's: the model may see what it must predict")
        raise CheckFailed(f"over the last {CURVE_TAIL} steps the loss is on average {abs(gap):.3f} nats {hint} "
                          f"(band {band:.3f})")


def tail_gap(got: list, want: list) -> float:  # mean of got - want over the last CURVE_TAIL steps
    return sum(a - b for a, b in zip(got[-CURVE_TAIL:], want[-CURVE_TAIL:])) / CURVE_TAIL


def short_training_curve(pipeline: Pipeline) -> list[float]:
    """The loss over the first CURVE_STEPS pretraining steps of a GPT built with the pipeline's blocks, from
    the reference's initial weights; under ``toolkit grade`` the grader trains it, the blocks answering in the child."""
    model = pipeline.new_model()
    cfg = replace(pipeline.config.pretrain, steps=CURVE_STEPS)
    return [round(x, 5) for x in pretrain(model, pipeline.train_stream, cfg, **pipeline.training())]


def record(components) -> dict:
    outputs = []
    for B, T, C, nh in SHAPES:
        block, x, _ = seeded(components, Case(B, T, C, nh))
        with torch.no_grad():
            outputs.append(block(x).tolist())
    return {"shapes": SHAPES, "atol": ATOL, "outputs": outputs,
            "curve": short_training_curve(Pipeline(components, log=lambda msg: None))}


# the figures that matter, at the top of a student's report: (check, said from its metrics)
FIGURES = [("block.trains_like_reference", lambda m: f"loss {m['final_loss']:.3f} after training from scratch "
                                                   f"(reference {m['reference_final_loss']:.3f})")]
