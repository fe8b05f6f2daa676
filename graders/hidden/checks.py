"""Hidden checks of every component: the solution, live, on inputs the public checks never use."""

import random
from pathlib import Path

import torch

from graders import calibration, contexts
from graders.attention import TOLERANCE, name_mistake, seeded, seeded_module
from graders.attention import Case as AttentionCase
from graders.attention import pipeline_cases as attention_cases
from graders.block import Case as BlockCase
from graders.block import seeded as seeded_block
from graders.hidden import SOLUTIONS, solution
from graders.optimizer import CE_ATOL, call_loss, run_plan
from graders.optimizer import Plan as AdamPlan
from graders.reward import reward_gain
from graders.sampler import (DRAW_BATCH, Case, Row, Setting, check_draws, check_pipeline_draws, dial, differs, pipeline_size,
                             reference_dial, reference_probs, sample)
from graders.sft_mask import SPECIAL, diagnose, mask_cases
from toolkit.checks import CheckFailed, Partial, check
from toolkit.data_stages import check_mask
from toolkit.pipeline import Pipeline
from toolkit.plugins import Components
from toolkit.world import World


@check("tokenizer", points=2)
def merges_on_another_corpus(ctx):
    "Learns the solution's merges, and encodes like it, on a corpus the public checks never use."
    text = " ".join(World(seed=3).pretraining_documents(80, seed=11)) + " aaaa bbbb abab ÿÿÿ <|end|> ab"
    mine, ref = ctx.components.tokenizer(), solution("tokenizer").tokenizer()
    mine.train(text, 360)
    ref.train(text, 360)
    for i, (g, e) in enumerate(zip(list(mine.merges), list(ref.merges))):
        if tuple(g) != tuple(e):
            raise CheckFailed(f"on another corpus, merge #{i} is {tuple(g)}, expected {tuple(e)}")
    if len(mine.merges) != len(ref.merges):
        raise CheckFailed(f"on another corpus, learned {len(mine.merges)} merges, expected {len(ref.merges)}")
    for s in ("aaaaaaa", "abababab", "What is the capital of Chile ?"):
        if mine.encode(s) != ref.encode(s):
            raise CheckFailed(f"encode({s!r}) gave {mine.encode(s)}, expected {ref.encode(s)}")


@check("attention", points=2)
def random_shapes(ctx):
    "Same output as the solution on 8 random shapes (float64, atol 1e-9) and in the pipeline's contexts (float32 too)."
    rng = random.Random(2024)
    cases = []
    for i in range(8):
        nh, hs = rng.randint(1, 6), rng.randint(1, 7)
        cases.append(AttentionCase(rng.randint(1, 4), rng.randint(1, 20), nh * hs, nh, 100 + i))
    cases += attention_cases(ctx, contexts.run_seed(ctx))
    for case in cases:
        module, x, state = seeded(ctx.components, case.B, case.T, case.C, case.nh, case.seed, case.dtype)
        ref, _ = seeded_module(solution("attention"), case.B, case.T, case.C, case.nh, case.seed, case.dtype)
        with torch.no_grad():
            got = module(x)
            err = (got.double() - ref(x).double()).abs().max().item()
        if not err <= TOLERANCE[case.dtype]:
            raise CheckFailed(f"output differs from the solution's by {err:.2e} for {case}: "
                              f"{name_mistake(state, x, case.nh, got)}")


@check("block", points=2)
def block_random_shapes(ctx):
    "Same output, and same gradients of the input and every parameter, as the solution's block on random shapes and weights (float64, atol 1e-9; float32, 1e-4)."
    rng = contexts.run_seed(ctx)
    for i in range(6):
        nh = rng.randint(1, 6)
        dtype, atol = (torch.float64, 1e-9) if i % 2 == 0 else (torch.float32, 1e-4)
        case = BlockCase(rng.randint(1, 4), rng.randint(1, 24), nh * rng.randint(1, 8), nh, rng.getrandbits(31), dtype)
        (mine, x, _), (ref, _, _) = seeded_block(ctx.components, case), seeded_block(solution("block"), case)
        upstream = torch.randn(x.shape, generator=contexts.torch_seed(rng), dtype=torch.float64).to(dtype)
        outputs, grads = [], []
        for block in (mine, ref):
            xi = x.clone().requires_grad_(True)
            y = block(xi)
            if not isinstance(y, torch.Tensor) or y.shape != x.shape:
                raise CheckFailed(f"forward of an input {tuple(x.shape)} did not return a tensor of its shape")
            (y * upstream).sum().backward()
            named = dict(block.named_parameters())
            grads.append([xi.grad] + [named[n].grad for n in sorted(named)])
            outputs.append(y.detach())
        error = (outputs[0].double() - outputs[1].double()).abs().max().item()
        if not error <= atol:
            raise CheckFailed(f"the output differs from the solution's by {error:.2e} on another shape and weights")
        for g, h in zip(*grads):
            if g is None or h is None or not (g.double() - h.double()).abs().max().item() <= atol * 10:
                raise CheckFailed("a gradient (of the input or of a parameter) differs from the solution's on another "
                                  "shape and weights")


def unseen_adam_plan(rng: random.Random) -> tuple[AdamPlan, dict]:
    """Parameters, gradients, a schedule and hyperparameters the public checks never use, drawn by ``rng``
    (the instructor's seed): 3 to 6 parameters of 1 to 3 dimensions, some of one shape, one frozen, one
    skipping steps; 40 steps."""
    shapes = [tuple(rng.randint(1, 5) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(3, 6))]
    shapes[-1] = shapes[0]  # two parameters of one shape
    lrs = [10 ** rng.uniform(-3, -1.5) for _ in range(40)]
    plan = AdamPlan(shapes, seed=rng.getrandbits(31), lrs=lrs, frozen=(1,), skips={2: rng.randint(2, 4)})
    settings = dict(betas=(rng.uniform(0.8, 0.95), rng.uniform(0.95, 0.999)), eps=10 ** rng.uniform(-8, -5),
                    weight_decay=rng.uniform(0.0, 0.2))
    return plan, settings


@check("optimizer", points=2)
def adamw_unseen_settings(ctx):
    "Equals the solution's AdamW on parameters, gradients, betas, eps, weight decay and a schedule the public checks never use (float64, atol 1e-10; float32, 1e-5)."
    rng = contexts.run_seed(ctx)
    for dtype, atol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        plan, settings = unseen_adam_plan(rng)
        got = run_plan(ctx.components.optimizer, plan, settings, dtype)
        want = run_plan(solution("optimizer").optimizer, plan, settings, dtype)
        for step, (mine, theirs) in enumerate(zip(got, want)):
            error = max((a - b).abs().max().item() for a, b in zip(mine, theirs))
            if not error <= atol:
                raise CheckFailed(f"in {str(dtype).removeprefix('torch.')}, the parameters differ from the solution's "
                                  f"by {error:.2e} after step {step + 1} of another schedule and other settings")


@check("optimizer", points=1)
def cross_entropy_unseen(ctx):
    "Equals the solution's loss on vocabularies, batches and logits the public checks never use (float64, atol 1e-9)."
    rng = contexts.run_seed(ctx)
    for _ in range(4):
        B, T, V = rng.randint(1, 8), rng.randint(1, 64), rng.randint(2, 1200)
        gen = contexts.torch_seed(rng)
        logits = torch.randn(B, T, V, generator=gen, dtype=torch.float64) * 10 ** rng.uniform(-1, 3.5)
        targets = torch.randint(V, (B, T), generator=gen)
        got, _ = call_loss(ctx, logits, targets)
        want = solution("optimizer").cross_entropy(logits, targets)
        if not abs(got.item() - want.item()) <= CE_ATOL * max(1.0, abs(want.item())):
            raise CheckFailed(f"the loss on logits (B={B}, T={T}, V={V}) is {got.item():.6f}, the solution's "
                              f"{want.item():.6f}")


@check("sft_mask", points=2)
def other_conversations(ctx):
    "The solution's mask on 64 other chats (longer, more turns, truncated, padded)."
    tokens = mask_cases(n=64, seed=7, max_len=40)
    want = solution("sft_mask").sft_mask(tokens.clone(), dict(SPECIAL))
    got = check_mask(ctx.components.sft_mask(tokens.clone(), dict(SPECIAL)), tokens, ctx.components.source("sft_mask"))
    if not torch.equal(got, want):
        raise CheckFailed(diagnose(tokens, got, want))


@check("reward", points=1)
def loss_matches_solution(ctx):
    "The loss equals the solution's on random rewards (float64, 1e-9)."
    gen = torch.Generator().manual_seed(99)
    c, j = (torch.randn(32, generator=gen, dtype=torch.float64) * 3 for _ in range(2))
    got, want = ctx.components.reward_loss(c, j), solution("reward").reward_loss(c, j)
    if not isinstance(got, torch.Tensor) or got.shape != () or not abs(got.item() - want.item()) <= 1e-9:
        shown = f"{got.item():.6f}" if isinstance(got, torch.Tensor) and got.numel() == 1 else repr(got)[:40]
        raise CheckFailed(f"loss on random rewards is {shown}, expected {want.item():.6f} (the mean of -log sigmoid)")


GAIN_SHARE = 0.5  # full credit from half the reference's reward gain; none at no gain
_solution_pipelines: dict = {}  # the solution's reward model, built once per grading process


def solution_reward_pipeline(ctx) -> Pipeline:
    """A pipeline with the instructor's reward model: cached on disk under the solution's source, so that
    it is trained once per cache; the check's own when the submission's reward plugin is the solution's file."""
    code = (SOLUTIONS / "reward.py").read_text(encoding="utf-8")
    if isinstance(ctx.components, Components):  # not under ``toolkit grade``, whose submission runs in a child
        mine = Path(ctx.components.source("reward"))
        if mine.is_file() and mine.read_text(encoding="utf-8") == code:
            return ctx.pipeline
    key = (repr(ctx.config), str(ctx.cache_dir))
    if key not in _solution_pipelines:
        _solution_pipelines[key] = Pipeline(solution("reward"), ctx.config, ctx.cache_dir, log=ctx.log, reward_code=code)
    return _solution_pipelines[key]


def gain_full() -> float:
    """The judged reward gain that earns full credit: GAIN_SHARE of the solution's worst seed."""
    return GAIN_SHARE * calibration.at_least("reward_gain", 0.0)


@check("reward", points=2, behavioural=True)
def rlhf_judged_by_solution(ctx):
    "After RLHF with your reward model, the solution's reward model prefers the new replies (>= half its own gain)."
    replies = ctx.earlier.get("reward.rlhf_improves", {}).get("_replies")
    if not replies:
        ctx.pipeline.reward_model  # raises what stopped the RLHF check if the reward model did (a stub: not implemented)
        raise CheckFailed("the RLHF check ended before the policy's replies were sampled, so there is nothing to judge")
    gain = ctx.metrics["reward_gain"] = reward_gain(solution_reward_pipeline(ctx), replies)
    full = gain_full()
    ctx.metrics["solution_gain"] = calibration.span("reward_gain")
    if gain < full:
        return Partial(max(0.0, gain / full), f"the solution's reward model scores the replies after RLHF {gain:+.2f} "
                       f"higher than before (the solution's own RLHF: {calibration.span('reward_gain')}, full credit "
                       f"from {full:+.2f}): RLHF followed your reward model away from what the solution's rewards")


def unseen_cases() -> list[Case]:
    """Six cases of two rows no public check uses: random sizes, scales and settings; each first row
    ties at its maximum, each second row somewhere at random; a fifth of the logits -inf."""
    rng, gen = random.Random(1811), torch.Generator().manual_seed(1811)
    cases = []
    for i in range(6):
        V = rng.randint(6, 40)
        rows = []
        for r in range(2):
            x = torch.randn(V, generator=gen) * rng.uniform(0.5, 3.0)
            x[rng.sample(range(V), V // 5)] = float("-inf")
            top = x.argmax().item()
            a, b = rng.sample([j for j in x.isfinite().nonzero().flatten().tolist() if j != top], 2)
            x[a] = x[top] if r == 0 else x[b]
            rows.append(Row(x.tolist(), f"random logits (row {r}, V {V})"))
        top_k = rng.choice([None, rng.randint(1, V)])
        top_p = rng.choice([None, round(rng.uniform(0.3, 0.95), 3)])
        cases.append(Case(f"unseen case {i}", rows, rng.choice([0.3, 0.7, 1.0, 1.6]), top_k, top_p))
    return cases


@check("sampler", points=2)
def unseen_logits(ctx):
    "On random logits and settings: the solution's greedy ids, and draws that fit the solution's probabilities (also among the pipeline's vocabulary sizes)."
    # The probabilities are the solution's, live (what it hands torch.multinomial); the test is the public
    # checks' exact one: a correct sampler fails it with probability at most 12 rows x 1e-6.
    ref = solution("sampler")
    for i, case in enumerate(unseen_cases()):
        logits = case.logits()
        got = sample(ctx.components, logits, 0.0, case.top_k, case.top_p, torch.Generator().manual_seed(0))
        want = ref.sample(logits.clone(), 0.0, case.top_k, case.top_p, torch.Generator().manual_seed(0))
        if not torch.equal(got, want):
            raise CheckFailed(f"{case.name}: temperature 0 gave ids {got.tolist()}, the solution {want.tolist()} "
                              "(the argmax, ties to the lowest id)")
        check_draws(ctx.components, case, reference_probs(ref, case), seed=5000 + i)
    rng = contexts.run_seed(ctx)
    for case in unseen_cases():  # again among the pipeline's vocabulary sizes, in its batch sizes
        V, B = pipeline_size(ctx, rng, DRAW_BATCH)
        check_pipeline_draws(ctx.components, case, reference_probs(ref, case), V, B, rng)


@check("sampler", points=2, behavioural=True)
def nucleus_dial(ctx):
    "With top-p on (and top-k), the probe's replies follow the solution's at two more settings."
    settings = [Setting(1.5, top_p=0.6), Setting(2.0, top_k=20, top_p=0.9)]
    with ctx.time_limit(600, "sampling the probe's replies at two settings"):
        mine = dial(ctx.pipeline, settings)
    reason = differs(mine, reference_dial(ctx.pipeline, settings, "solution", solution("sampler").sample), "the solution")
    if reason:
        raise CheckFailed(reason)
