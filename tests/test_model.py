"""The GPT, its two attention layers, the training loops, the learning-rate schedule and
generation, all on a tiny configuration so that the whole file runs in a few seconds.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from toolkit.baselines import SDPAttention
from toolkit.model import GPT, Block, GPTConfig, KVCache
from toolkit.plugins import Components, build_manager, load_submission
from toolkit.sample import generate, sample_next, stream
from toolkit.train import (TrainConfig, by_length, lr_at, masked_loss_sum, pretrain, reach, sft,
                           stream_batch, stream_loss)

ROOT = Path(__file__).resolve().parents[1]
CFG = GPTConfig(vocab_size=300, block_size=16, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(autouse=True, scope="module")
def _few_threads():
    """The machine is shared: keep torch on one thread, and restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def solution_attention():
    """``make_attention`` from solutions/attention.py, loaded as the grader loads a submission."""
    components = Components(build_manager(load_submission(ROOT / "solutions" / "attention.py")))
    assert components.source("attention").endswith("attention.py")
    return components.attention


ATTENTIONS = ["sdpa", "solution"]


@pytest.fixture(params=ATTENTIONS)
def make_attention(request, solution_attention):
    return SDPAttention if request.param == "sdpa" else solution_attention


def make_model(make_attention=SDPAttention, seed: int = 0, config: GPTConfig = CFG) -> GPT:
    torch.manual_seed(seed)
    return GPT(config, lambda cfg: Block(cfg, make_attention(cfg)))


def repetitive_stream(n: int = 2000, period: int = 7) -> torch.Tensor:
    return (torch.arange(n) % period + 10).long()


def random_stream(n: int = 2000, seed: int = 0) -> torch.Tensor:
    return torch.randint(CFG.vocab_size, (n,), generator=torch.Generator().manual_seed(seed))


# -- the model -----------------------------------------------------------------------------
def test_logits_shape(make_attention):
    model = make_model(make_attention)
    for B, T in ((1, 1), (3, 5), (2, CFG.block_size)):
        idx = torch.randint(CFG.vocab_size, (B, T))
        logits = model(idx)
        assert logits.shape == (B, T, CFG.vocab_size)
        assert torch.isfinite(logits).all()
        assert model.hidden(idx).shape == (B, T, CFG.n_embd)


def test_longer_than_block_size_is_refused():
    with pytest.raises(AssertionError, match="block_size"):
        make_model()(torch.zeros(1, CFG.block_size + 1, dtype=torch.long))


def test_weight_tying_shares_storage():
    model = make_model()
    assert model.lm_head.weight is model.wte.weight
    assert model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr()
    # counted once among the parameters
    params = list(model.parameters())
    assert sum(p is model.wte.weight for p in params) == 1
    # a change through one is seen through the other
    with torch.no_grad():
        model.wte.weight[3, 0] = 123.0
    assert model.lm_head.weight[3, 0].item() == 123.0


def test_init_is_small_and_residual_projections_are_scaled():
    model = make_model()
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.1)
    c_proj = model.h[0].mlp.c_proj.weight
    assert c_proj.std().item() == pytest.approx(0.02 / math.sqrt(2 * CFG.n_layer), rel=0.15)
    assert all((b.mlp.c_fc.bias == 0).all() for b in model.h)


def test_same_seed_same_initial_weights_different_seed_different(make_attention):
    a, b, c = make_model(make_attention, 3), make_model(make_attention, 3), make_model(make_attention, 4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["wte.weight"], sc["wte.weight"])


def test_whole_model_is_causal(make_attention):
    model = make_model(make_attention).eval()
    gen = torch.Generator().manual_seed(1)
    idx = torch.randint(CFG.vocab_size, (2, CFG.block_size), generator=gen)
    with torch.no_grad():
        base = model(idx)
        for t in (0, 5, CFG.block_size - 2):
            changed = idx.clone()
            changed[:, t + 1:] = torch.randint(CFG.vocab_size, changed[:, t + 1:].shape, generator=gen)
            assert not torch.equal(changed, idx)
            out = model(changed)
            torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=1e-5, atol=1e-5)
            # and the later positions do see the change
            assert not torch.allclose(out[:, t + 1:], base[:, t + 1:])


def test_each_attention_layer_is_causal_and_mixes_the_past(make_attention):
    torch.manual_seed(0)
    attn = make_attention(CFG)
    x = torch.randn(2, 10, CFG.n_embd)
    y = attn(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 6:] += 1.0
    y2 = attn(x2)
    torch.testing.assert_close(y2[:, :6], y[:, :6])
    x3 = x.clone()
    x3[:, 0] += 1.0  # the first token is seen by every later position
    assert not torch.allclose(attn(x3)[:, 1:], y[:, 1:])


def test_solution_attention_matches_sdpa_with_the_same_weights(solution_attention):
    torch.manual_seed(0)
    sdpa, mine = SDPAttention(CFG), solution_attention(CFG)
    mine.load_state_dict(sdpa.state_dict())
    x = torch.randn(3, CFG.block_size, CFG.n_embd)
    torch.testing.assert_close(mine(x), sdpa(x), rtol=1e-5, atol=1e-5)
    # and so whole models built from either agree
    a, b = make_model(SDPAttention, 0), make_model(solution_attention, 0)
    b.load_state_dict(a.state_dict())
    idx = torch.randint(CFG.vocab_size, (2, CFG.block_size))
    torch.testing.assert_close(b(idx), a(idx), rtol=1e-5, atol=1e-5)


# -- pretraining ----------------------------------------------------------------------------
def test_stream_batch_targets_are_inputs_shifted_by_one():
    stream = torch.arange(100)
    x, y = stream_batch(stream, 8, 5, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8)
    assert torch.equal(y, x + 1)
    assert (y <= 99).all()


def test_pretrain_is_deterministic():
    cfg = TrainConfig(steps=6, batch_size=4, warmup=2, seed=7)
    stream = random_stream()
    runs = []
    for _ in range(2):
        model = make_model(seed=1)
        runs.append((pretrain(model, stream, cfg), model.state_dict()))
    (l1, s1), (l2, s2) = runs
    assert len(l1) == 6 and l1 == l2
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    # a different training seed draws different windows
    other = pretrain(make_model(seed=1), stream, TrainConfig(steps=6, batch_size=4, warmup=2, seed=8))
    assert other != l1


@pytest.fixture(scope="module")
def counting():
    """A model pretrained on the stream 10 11 ... 16 10 11 ...: it learns to count mod 7."""
    model = make_model(seed=0)
    stream = repetitive_stream()
    before = stream_loss(model, stream, n_batches=2, batch_size=8)
    steps = []
    losses = pretrain(model, stream, TrainConfig(steps=40, batch_size=8, warmup=5, lr=1e-2),
                      on_step=lambda step, loss: steps.append((step, loss)))
    return model, stream, before, losses, steps


def test_pretrain_loss_decreases_on_a_repetitive_stream(counting):
    model, stream, before, losses, steps = counting
    assert len(losses) == 40
    assert losses[0] == pytest.approx(math.log(CFG.vocab_size), rel=0.1)  # about uniform at first
    assert sum(losses[-5:]) / 5 < 0.25 * losses[0], losses
    assert stream_loss(model, stream, n_batches=2, batch_size=8) < 0.25 * before
    assert steps == list(enumerate(losses))  # on_step sees every step
    assert not model.training  # training leaves the model in eval mode


# -- masked loss ----------------------------------------------------------------------------
def masked_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean SFT loss of one batch: ``masked_loss_sum`` over the number of targets it counts, as ``sft`` divides it."""
    return masked_loss_sum(logits, targets, mask) / mask.sum().clamp(min=1)


def test_masked_loss_all_true_is_plain_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=gen)
    targets = torch.randint(11, (3, 5), generator=gen)
    mask = torch.ones(3, 5, dtype=torch.bool)
    expected = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1))
    torch.testing.assert_close(masked_loss(logits, targets, mask), expected)


def test_masked_loss_ignores_unmasked_targets():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 11, generator=gen)
    targets = torch.randint(11, (2, 6), generator=gen)
    mask = torch.tensor([[0, 0, 1, 1, 0, 1], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    loss = masked_loss(logits, targets, mask)
    changed = targets.clone()
    changed[0, 0] = (changed[0, 0] + 1) % 11
    changed[1, 5] = (changed[1, 5] + 3) % 11
    torch.testing.assert_close(masked_loss(logits, changed, mask), loss)
    changed_logits = logits.clone()
    changed_logits[0, 1] += 5 * torch.randn(11, generator=gen)
    torch.testing.assert_close(masked_loss(changed_logits, targets, mask), loss)
    # it is the mean over the masked targets only
    per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    torch.testing.assert_close(loss, per_token[mask].mean())
    # a masked target does count
    changed[0, 2] = (changed[0, 2] + 1) % 11
    assert not torch.allclose(masked_loss(logits, changed, mask), loss)


def test_masked_loss_with_an_empty_mask_is_zero_not_nan():
    logits = torch.randn(2, 3, 7)
    loss = masked_loss(logits, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0


# -- SFT --------------------------------------------------------------------------------------
def sft_data(n: int = 12, T: int = CFG.block_size + 1):
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randint(CFG.vocab_size, (n, T), generator=gen)
    mask = torch.zeros(n, T - 1, dtype=torch.bool)
    mask[:, T // 2:] = True  # "the assistant's turn"
    return tokens, mask


def test_sft_with_replay_runs_and_is_deterministic():
    tokens, mask = sft_data()
    replay = random_stream(seed=5)
    cfg = TrainConfig(steps=5, batch_size=4, warmup=2, replay_batch_size=3, seed=2)
    runs = []
    for _ in range(2):
        model = make_model(seed=0)
        runs.append((sft(model, tokens, mask, cfg, replay=replay), model.state_dict()))
    (l1, s1), (l2, s2) = runs
    assert len(l1) == 5 and all(math.isfinite(x) for x in l1)
    assert l1 == l2
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    # replay adds a second loss term: without it the losses are different (and smaller)
    no_replay = sft(make_model(seed=0), tokens, mask, TrainConfig(steps=5, batch_size=4, warmup=2, seed=2))
    assert no_replay != l1
    # at initialisation both terms are about log(V): with replay the first loss is their sum
    assert no_replay[0] == pytest.approx(math.log(CFG.vocab_size), rel=0.1)
    assert l1[0] == pytest.approx(2 * math.log(CFG.vocab_size), rel=0.1)
    # replay_batch_size without a replay stream is plain SFT
    assert sft(make_model(seed=0), tokens, mask, cfg, replay=None) == no_replay


@pytest.mark.parametrize("kind", ["assistant turns", "every target", "none", "random"])
def test_sft_halves_cut_to_their_length_give_the_whole_batch_loss_and_gradient(kind):
    """SFT computes each batch in two halves by length, each cut after its last masked target: the
    same masked mean and gradient as the whole padded batch, whatever the mask (a wrong one too)."""
    gen = torch.Generator().manual_seed(7)
    T = CFG.block_size + 1
    tokens = torch.randint(CFG.vocab_size, (10, T), generator=gen)
    ends = torch.randint(4, T - 1, (10,), generator=gen)  # where each chat's assistant turn ends
    positions = torch.arange(T - 1)
    mask = {"assistant turns": (positions >= ends[:, None] // 2) & (positions < ends[:, None]),
            "every target": torch.ones(10, T - 1, dtype=torch.bool),
            "none": torch.zeros(10, T - 1, dtype=torch.bool),
            "random": torch.rand(10, T - 1, generator=gen) < 0.2}[kind]
    ix = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    model = make_model(seed=0).double()

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    whole = grads(masked_loss(model(tokens[ix, :-1]), tokens[ix, 1:], mask[ix]))
    halves = by_length(ix, reach(mask))
    assert sorted(torch.cat([rows for rows, _ in halves]).tolist()) == sorted(ix.tolist())
    if kind == "assistant turns":  # the halves are shorter than the batch
        assert all(length < T - 1 for _, length in halves)
    cut = grads(sum(masked_loss_sum(model(tokens[rows, :n]), tokens[rows, 1:n + 1], mask[rows, :n])
                    for rows, n in halves) / mask[ix].sum().clamp(min=1))
    torch.testing.assert_close(cut[0], whole[0])
    for a, b in zip(cut[1], whole[1]):
        torch.testing.assert_close(a, b)


def test_sft_learns_only_the_masked_targets():
    """Train on a fixed chat; the masked half is learned, the unmasked half is not trained on."""
    tokens, mask = sft_data(n=1)
    model = make_model(seed=0)
    losses = sft(model, tokens, mask, TrainConfig(steps=30, batch_size=2, warmup=3, lr=1e-2, weight_decay=0.0))
    assert losses[-1] < 0.2 * losses[0]
    with torch.no_grad():
        per_token = F.cross_entropy(model(tokens[:, :-1]).transpose(1, 2), tokens[:, 1:], reduction="none")[0]
    assert per_token[mask[0]].mean() < 0.5 < per_token[~mask[0]].mean()


# -- generation -------------------------------------------------------------------------------
def prompt_ids(B: int = 3, T: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randint(CFG.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


def test_greedy_is_deterministic_and_matches_argmax(make_attention):
    model = make_model(make_attention, seed=0)
    idx = prompt_ids()
    a = generate(model, idx, 8, temperature=0)
    b = generate(model, idx, 8, temperature=0)
    assert a == b
    assert [len(row) for row in a] == [8, 8, 8]
    assert all(0 <= t < CFG.vocab_size for row in a for t in row)
    # the first new token is the argmax of the last position's logits
    with torch.no_grad():
        first = model(idx)[:, -1].argmax(-1).tolist()
    assert [row[0] for row in a] == first
    # and the prompt is not modified in place
    assert torch.equal(idx, prompt_ids())


def test_greedy_rows_are_independent_of_each_other():
    model = make_model(seed=0)
    idx = prompt_ids()
    together = generate(model, idx, 6, temperature=0)
    alone = [generate(model, idx[i:i + 1], 6, temperature=0)[0] for i in range(len(idx))]
    assert together == alone


def test_stop_ids_keep_the_stop_token_and_stop_that_row_only():
    model = make_model(seed=0)
    idx = prompt_ids()
    free = generate(model, idx, 10, temperature=0)
    stop = free[0][2]
    cut = free[0].index(stop)  # where row 0 first emits it
    stopped = generate(model, idx, 10, temperature=0, stop_ids={stop})
    for row_free, row in zip(free, stopped):
        if stop in row_free:
            assert row == row_free[: row_free.index(stop) + 1]
            assert row[-1] == stop
        else:
            assert row == row_free  # the other rows go on to max_new_tokens
    assert stopped[0] == free[0][: cut + 1]


def test_generation_stops_early_when_every_row_is_done():
    model = make_model(seed=0)
    idx = prompt_ids(B=1)
    first = generate(model, idx, 1, temperature=0)[0][0]
    assert generate(model, idx, 50, temperature=0, stop_ids={first}) == [[first]]


def test_counting_model_continues_the_cycle_past_block_size(counting):
    """Generating more tokens than fit in the block needs the *last* block_size tokens."""
    model, stream = counting[:2]
    idx = torch.stack([stream[s : s + CFG.block_size - 2] for s in range(7)])
    out = generate(model, idx, 12, temperature=0)
    expected = [stream[s + CFG.block_size - 2 : s + CFG.block_size + 10].tolist() for s in range(7)]
    assert out == expected


def test_counting_model_stops_at_the_stop_token(counting):
    model, stream = counting[:2]
    idx = stream[:5][None]  # 10 11 12 13 14 -> 15 16 10 11 12 ...
    assert generate(model, idx, 10, temperature=0, stop_ids={11}) == [[15, 16, 10, 11]]
    assert generate(model, idx, 10, temperature=0, stop_ids={11, 16}) == [[15, 16]]
    assert generate(model, idx, 10, temperature=0, stop_ids={99}) == [stream[5:15].tolist()]


def test_generation_beyond_block_size_crops_the_context():
    model = make_model(seed=0)
    idx = prompt_ids(B=2, T=CFG.block_size - 2)
    out = generate(model, idx, 12, temperature=0)
    assert [len(row) for row in out] == [12, 12]
    # the token after the block is full is predicted from the last block_size tokens only
    full = torch.cat([idx, torch.tensor(out)], dim=1)
    with torch.no_grad():
        for j in (3, 11):  # new token j is predicted from full[:, : idx.shape[1] + j]
            context = full[:, : idx.shape[1] + j][:, -CFG.block_size:]
            assert model(context)[:, -1].argmax(-1).tolist() == full[:, idx.shape[1] + j].tolist()


def test_sampling_is_reproducible_with_a_seeded_generator():
    model = make_model(seed=0)
    idx = prompt_ids()
    sample = lambda seed, **kw: generate(model, idx, 10, temperature=1.0,  # noqa: E731
                                         generator=torch.Generator().manual_seed(seed), **kw)
    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    assert [len(row) for row in sample(1)] == [10, 10, 10]
    assert sample(1, top_k=5) == sample(1, top_k=5)


def test_top_k_one_is_greedy_and_top_k_limits_the_choice():
    model = make_model(seed=0)
    idx = prompt_ids()
    greedy = generate(model, idx, 6, temperature=0)
    gen = torch.Generator().manual_seed(0)
    assert generate(model, idx, 6, temperature=1.0, top_k=1, generator=gen) == greedy
    with torch.no_grad():
        top3 = model(idx)[:, -1].topk(3).indices.tolist()
    for seed in range(5):
        out = generate(model, idx, 1, temperature=5.0, top_k=3, generator=torch.Generator().manual_seed(seed))
        assert all(row[0] in allowed for row, allowed in zip(out, top3))


# -- the KV cache ------------------------------------------------------------------------------
def uncached(model: GPT) -> GPT:
    """The same model, seen as one whose attention does not support the cache (as a student's)."""
    class NoCache(GPT):
        supports_cache = False
    model.__class__ = NoCache
    return model


def test_the_cache_is_used_for_the_baseline_attention_only(solution_attention):
    assert make_model().supports_cache
    assert not make_model(solution_attention).supports_cache  # a plugin only promises forward(x)

    class Sub(SDPAttention):  # a subclass may compute anything: no cache
        pass
    assert not make_model(Sub).supports_cache
    with pytest.raises(AssertionError, match="cache"):
        make_model(solution_attention)(prompt_ids(), cache=KVCache())


def test_cached_logits_match_the_whole_context(counting):
    """Prompt read into the cache, then one token at a time: the logits of every position match a
    forward pass over the whole sequence, up to the last position the block holds."""
    for model in (counting[0], make_model(seed=1)):
        idx = torch.randint(CFG.vocab_size, (3, CFG.block_size), generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            full = model(idx)  # (B, T, V)
            cache = KVCache()
            parts = [model(idx[:, :5], cache=cache)]  # the prompt: 5 tokens at once
            parts += [model(idx[:, t:t + 1], cache=cache) for t in range(5, 9)]  # then one by one
            parts.append(model(idx[:, 9:], cache=cache))  # then several at once again
        assert len(cache) == CFG.block_size
        assert len(cache.layers) == CFG.n_layer and cache.layers[0][0].shape == (3, CFG.n_head, CFG.block_size,
                                                                                  CFG.n_embd // CFG.n_head)
        torch.testing.assert_close(torch.cat(parts, 1), full, rtol=0, atol=1e-5)
        with torch.no_grad():
            assert torch.equal(parts[0], model(idx[:, :5]))  # reading the prompt is the plain forward pass
        with pytest.raises(AssertionError, match="block_size"):
            model(idx[:, :1], cache=cache)  # the block is full


def test_generation_with_the_cache_gives_the_tokens_of_recomputing(counting):
    """Greedy and sampled (same generator), within the block and past it (where each step reads the
    last block_size tokens again, as without a cache)."""
    trained = counting[0]
    idx = torch.stack([counting[1][s: s + 5] for s in range(4)])
    for model in (trained, make_model(seed=0)):
        for n_new in (8, CFG.block_size):  # within the block; past it
            runs = {}
            for name, m in (("cached", model), ("recomputed", uncached(copy.deepcopy(model)))):
                runs[name] = (generate(m, idx, n_new, temperature=0),
                              generate(m, idx, n_new, temperature=1.0, top_k=20, top_p=0.9,
                                       generator=torch.Generator().manual_seed(3)))
            assert runs["cached"] == runs["recomputed"]
    assert generate(trained, idx[:1], 10, temperature=0) == [counting[1][5:15].tolist()]


def test_stream_yields_what_generate_returns():
    model = make_model(seed=0)
    ids = prompt_ids(B=1)[0].tolist()
    out = generate(model, torch.tensor([ids]), 12, temperature=1.0, generator=torch.Generator().manual_seed(5))[0]
    assert list(stream(model, ids, 12, 1.0, generator=torch.Generator().manual_seed(5))) == out
    assert list(stream(model, ids, 12, 1.0, stop_ids={out[3]}, generator=torch.Generator().manual_seed(5))) \
        == out[: out.index(out[3]) + 1]


# -- the sampling step --------------------------------------------------------------------------
def test_generate_calls_the_sampler_once_per_step_with_every_row():
    model = make_model(seed=0)
    idx = prompt_ids(B=3)
    calls = []

    def sampler(logits, temperature, top_k, top_p, generator):
        calls.append((tuple(logits.shape), temperature, top_k, top_p, generator))
        return torch.tensor([7, 8, 9 if len(calls) < 4 else 5])  # row 0 stops at once, row 2 at step 4

    gen = torch.Generator()
    out = generate(model, idx, 10, 0.5, 3, {7, 5}, gen, top_p=0.8, sampler=sampler)
    assert out == [[7], [8] * 10, [9, 9, 9, 5]]  # rows that stopped keep their stop token and no more
    assert calls == [((3, CFG.vocab_size), 0.5, 3, 0.8, gen)] * 10  # all 3 rows at every step, stopped or not


def test_generate_runs_until_every_row_stopped_or_the_budget():
    model = make_model(seed=0)
    n = []
    sampler = lambda logits, *a: (n.append(1), torch.full((logits.shape[0],), 4 if len(n) < 6 else 6))[1]  # noqa
    assert generate(model, prompt_ids(B=2), 10, 1.0, stop_ids={6}, sampler=sampler) == [[4] * 5 + [6]] * 2
    assert len(n) == 6
    n.clear()
    assert generate(model, prompt_ids(B=2), 3, 1.0, stop_ids={6}, sampler=sampler) == [[4] * 3] * 2


@pytest.mark.parametrize("bad", [torch.tensor([1, 2]), torch.tensor([[1], [2], [3]]), torch.tensor([1.0, 2.0, 3.0]),
                                 [1, 2, 3]])
def test_a_sampler_that_breaks_the_contract_is_named(bad):
    with pytest.raises(ValueError, match="sampler returned .*expected a LongTensor of shape \\(3,\\)"):
        generate(make_model(), prompt_ids(B=3), 4, sampler=lambda *a: bad)


def test_sample_next_greedy_is_argmax_lowest_id_on_ties():
    logits = torch.tensor([[0.0, 2.0, 2.0, 1.0], [5.0, -1.0, 5.0, 5.0]])
    for top_k, top_p in ((None, None), (1, 0.1), (3, 0.99)):
        assert sample_next(logits, 0, top_k, top_p, None).tolist() == [1, 0]


def draws(logits, n=2000, seed=0, **kw) -> torch.Tensor:
    """n tokens drawn for one row of logits: (n,)."""
    kw = {"temperature": 1.0, "top_k": None, "top_p": None, **kw}
    return sample_next(logits.expand(n, -1), generator=torch.Generator().manual_seed(seed), **kw)


def test_sample_next_top_k_keeps_the_ties_with_the_kth_value():
    logits = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0]])
    assert set(draws(logits, top_k=2).tolist()) == {0, 2, 3}  # 2 and 3 tie for second place
    assert set(draws(logits, top_k=1).tolist()) == {0}
    assert set(draws(logits, top_k=99).tolist()) == {0, 1, 2, 3, 4}


def test_sample_next_leaves_top_p_to_the_sampler_assignment():
    """The toolkit's sampler (the baseline) has no nucleus sampling: it is the assignment's to write."""
    probs = torch.tensor([[0.10, 0.45, 0.05, 0.25, 0.15]])
    assert set(draws(probs.log(), n=4000, top_p=0.6).tolist()) == {0, 1, 2, 3, 4}


def test_sample_next_is_todays_sampler_and_draws_from_the_generator_only():
    """Without top-p it is exactly the inline sampler generate had: the same tokens for a seed."""
    logits = torch.randn(16, 50, generator=torch.Generator().manual_seed(0)) * 3
    for t, k in ((1.0, None), (0.7, 5), (2.0, 1)):
        scaled = logits / t
        if k is not None:
            scaled = scaled.masked_fill(scaled < torch.topk(scaled, k).values[:, -1:], float("-inf"))
        old = torch.multinomial(F.softmax(scaled, -1), 1, generator=torch.Generator().manual_seed(9)).squeeze(1)
        torch.manual_seed(0)
        new = sample_next(logits, t, k, None, torch.Generator().manual_seed(9))
        torch.manual_seed(1)  # the global generator changes nothing
        again = sample_next(logits, t, k, None, torch.Generator().manual_seed(9))
        assert torch.equal(new, old) and torch.equal(again, old)
        assert new.dtype == torch.long and new.shape == (16,)


# -- the learning-rate schedule ---------------------------------------------------------------
def test_lr_warmup_is_linear_up_to_the_peak():
    cfg = TrainConfig(steps=100, lr=1e-3, warmup=10)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert [lr_at(s, cfg) for s in range(10)] == pytest.approx([1e-3 * (s + 1) / 10 for s in range(10)])
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(1e-3)  # cosine starts at the peak


def test_lr_cosine_decays_monotonically_to_a_tenth():
    cfg = TrainConfig(steps=100, lr=1e-3, warmup=10)
    decay = [lr_at(s, cfg) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert lr_at(55, cfg) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half-way
    assert lr_at(100, cfg) == pytest.approx(1e-4)  # the floor: 10% of the peak
    assert min(lr_at(s, cfg) for s in range(100)) >= 1e-4
    assert lr_at(99, cfg) == pytest.approx(1e-4, rel=0.01)


def test_lr_without_warmup():
    cfg = TrainConfig(steps=10, lr=2e-3, warmup=0)
    assert lr_at(0, cfg) == pytest.approx(2e-3)
    assert lr_at(10, cfg) == pytest.approx(2e-4)


def test_the_reward_model_does_not_depend_on_what_the_pipeline_built_before(tmp_path):
    """Its seed is its own: a first run (the base model built inside ``reward_model``) and a run
    that built the base model first train the same reward model."""
    from dataclasses import replace

    from toolkit.config import PipelineConfig
    from toolkit.pipeline import Pipeline

    config = replace(PipelineConfig.small(), reward=TrainConfig(steps=3, lr=1e-3, warmup=1))
    reward = Components(build_manager(load_submission(str(Path(__file__).parents[1] / "solutions"))), only="reward")
    first = Pipeline(reward, config, tmp_path, log=lambda m: None)
    _ = first.base_model
    later = Pipeline(reward, config, tmp_path, log=lambda m: None)  # loads the base model inside reward_model
    a, b = first.reward_model.state_dict(), later.reward_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_reward_model_is_cached_only_when_its_code_is_given(tmp_path):
    """A submission's reward model is trained on every run (nothing written); with ``reward_code``
    (the instructor's) it is saved, loaded by the next pipeline, and keyed by that code."""
    from dataclasses import replace

    from toolkit.config import PipelineConfig
    from toolkit.pipeline import Pipeline

    config = replace(PipelineConfig.small(), reward=TrainConfig(steps=3, lr=1e-3, warmup=1))
    reward = Components(build_manager(load_submission(str(Path(__file__).parents[1] / "solutions"))), only="reward")
    logs = []
    plain = Pipeline(reward, config, tmp_path, log=logs.append)
    assert plain.reward_key() is None
    _ = plain.reward_model
    assert not list(tmp_path.glob("reward-*.pt"))

    code = (Path(__file__).parents[1] / "solutions" / "reward.py").read_text()
    trained = Pipeline(reward, config, tmp_path, log=logs.append, reward_code=code)
    a = trained.reward_model.state_dict()
    assert [p.name for p in tmp_path.glob("reward-*.pt")] == [f"reward-{trained.reward_key()}.pt"]
    loaded = Pipeline(reward, config, tmp_path, log=logs.append, reward_code=code)
    b = loaded.reward_model.state_dict()
    assert any(m.startswith("reward: loaded from cache") for m in logs)
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], plain.reward_model.state_dict()[k]) for k in a)
    assert loaded.curves["reward"] == trained.curves["reward"]
    other = Pipeline(reward, config, tmp_path, log=logs.append, reward_code=code + "\n# edited\n")
    assert other.reward_key() != trained.reward_key()


# -- the data stages, built once per process ----------------------------------------------------
def _data_pipeline(components: Components | None = None, cache: Path | None = None, **changes):
    from dataclasses import replace

    from toolkit.config import PipelineConfig
    from toolkit.pipeline import Pipeline

    config = replace(PipelineConfig.small(), n_docs=311, **changes)  # a size no other test uses: built here first
    return Pipeline(components, config, cache, log=lambda m: None)


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("data-cache")


def test_pipelines_share_the_baseline_data_and_each_gets_its_own_copy(data_cache):
    a, b = _data_pipeline(cache=data_cache), _data_pipeline(cache=data_cache)
    assert a.tokenizer is not b.tokenizer and a.tokenizer.words == b.tokenizer.words
    assert "tokenizer" in a.timings and "tokenizer" not in b.timings  # trained once, in the first pipeline
    assert a.corpus == b.corpus and a.conversations == b.conversations and a.conversations is not b.conversations
    assert torch.equal(a.stream, b.stream) and a.stream.data_ptr() != b.stream.data_ptr()
    # what a caller does to its copy reaches no other pipeline
    want = b.stream.clone()
    a.stream[:10] = 0
    a.tokenizer.words.clear()
    a.conversations.append("mutated")
    c = _data_pipeline(cache=data_cache)
    assert torch.equal(c.stream, want) and c.tokenizer.words == b.tokenizer.words and c.conversations == b.conversations
    # another key, other data
    other = _data_pipeline(cache=data_cache, vocab_size=600)
    assert other.tokenizer.vocab_size == 600 != c.tokenizer.vocab_size
    assert other.corpus == c.corpus  # the corpus does not depend on the vocabulary


def test_the_next_process_loads_the_baseline_data_from_the_cache_folder(data_cache, monkeypatch, tmp_path):
    """The baseline's tokenizer and stream are kept in the cache folder: a process that starts afresh
    (nothing in ``toolkit.cache.memo``) loads them, the same, without training; another folder builds its own."""
    import toolkit.cache

    first = _data_pipeline(cache=data_cache)
    words, stream = first.tokenizer.words, first.stream
    assert len(list(data_cache.glob("data-*.pt"))) >= 2  # the tokenizer's words and the stream
    monkeypatch.setattr(toolkit.cache, "_MEMO", {})
    again = _data_pipeline(cache=data_cache)
    assert again.tokenizer.words == words and torch.equal(again.stream, stream) and "tokenizer" not in again.timings
    assert again.tokenizer.encode("The capital of Peru is Lima .") == first.tokenizer.encode("The capital of Peru is Lima .")
    monkeypatch.setattr(toolkit.cache, "_MEMO", {})
    elsewhere = _data_pipeline(cache=tmp_path)
    assert elsewhere.tokenizer.words == words and "tokenizer" in elsewhere.timings


def test_a_submissions_tokenizer_is_trained_by_every_pipeline():
    """Only the baseline's tokenizer is shared: a student's code may depend on anything."""
    mine = Components(build_manager(load_submission(ROOT / "solutions" / "tokenizer.py")), only="tokenizer")
    a, b = _data_pipeline(mine), _data_pipeline(mine)
    assert a.tokenizer is not b.tokenizer and "tokenizer" in a.timings and "tokenizer" in b.timings
    assert a.tokenizer.merges == b.tokenizer.merges
    assert torch.equal(a.stream, b.stream)
    baseline = _data_pipeline()
    assert not torch.equal(baseline.stream[:100], a.stream[:100])  # never the baseline's stream either


def test_kl_divergence_is_measured_on_the_models_themselves():
    """The grader's KL(policy || chat): zero for the same weights, positive once the policy moves,
    larger the further it moves; it reads the models, never a training curve."""
    from toolkit.baselines import WholeWordTokenizer
    from toolkit.rlhf import RLHFConfig, kl_divergence

    tok = WholeWordTokenizer()
    tok.train("What is the capital of France ? The capital of France is Paris .", 280)
    questions = ["What is the capital of France ?", "What is the capital of Chile ?"]
    cfg = RLHFConfig(max_new_tokens=6)
    chat = make_model(config=GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16))
    assert kl_divergence(chat, copy.deepcopy(chat), tok, questions, cfg) == pytest.approx(0.0, abs=1e-5)
    kls = []
    for scale in (0.05, 0.5):
        policy = copy.deepcopy(chat)
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(scale * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        kls.append(kl_divergence(policy, chat, tok, questions, cfg))
    assert 0 < kls[0] < kls[1]
