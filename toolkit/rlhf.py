"""Learning human taste: train a reward model on preference pairs, then RLHF the chat model.

The reward model and its loss come from the ``reward`` component; this module trains them
and uses them. The RL method is REINFORCE with a leave-one-out baseline (RLOO): for each
prompt, ``k`` replies are sampled, and each reply's advantage is its reward minus the mean
reward of the other ``k - 1``. That baseline needs no value network (PPO needs one, plus
clipping and several epochs per batch), has low variance at this scale, and has one knob
fewer to get wrong, which is why we chose it. A KL penalty toward the SFT model keeps the
policy from drifting into text that games the reward model:

    reward(reply) = r_phi(prompt + reply) - beta * sum_t [log pi(y_t) - log pi_sft(y_t)]
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from toolkit.sample import Sampler, generate, sample_next
from toolkit.template import BOS, END, USER, chat_prompt, encode_batch, render_chat
from toolkit.train import EPS, Optimizer, TrainConfig, adamw, fit


# -- the reward model ------------------------------------------------------------------
def encode_replies(tokenizer, questions: list[str], replies: list[str], block_size: int):
    """(question, reply) as one chat each: tokens (N, T) right-padded, lengths (N,)."""
    texts = [render_chat([("user", q), ("assistant", a)]) for q, a in zip(questions, replies)]
    return encode_batch(tokenizer, texts, block_size)


def train_reward_model(reward_model, loss_fn, chosen, rejected, cfg: TrainConfig,
                       optimizer: Optimizer = adamw) -> list[float]:
    """Fit ``reward_model`` on pairs: ``chosen``/``rejected`` are (tokens, lengths) of equal N."""
    (ct, cl), (rt, rl) = chosen, rejected

    def loss_of_batch(gen):
        ix = torch.randint(len(ct), (cfg.batch_size,), generator=gen)
        return loss_fn(reward_model(ct[ix], cl[ix]), reward_model(rt[ix], rl[ix]))

    return fit(reward_model, cfg, loss_of_batch, optimizer=optimizer)


@torch.no_grad()
def rewards(reward_model, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    reward_model.eval()
    return reward_model(tokens, lengths).float()


# -- RLHF ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RLHFConfig:
    steps: int = 30
    prompts_per_step: int = 16
    samples_per_prompt: int = 4  # k of RLOO
    lr: float = 5e-5  # measured: 2e-4 (beta 0.05) drifted to KL 9 and halved correct answers
    kl_coef: float = 0.1  # beta
    max_new_tokens: int = 16
    temperature: float = 1.0
    seed: int = 0


def reply_logprobs(model, idx: torch.Tensor, n_prompt: int, reply_mask: torch.Tensor) -> torch.Tensor:
    """Sum over each row's reply tokens of log p(token): idx (N, T), reply_mask (N, T - n_prompt) -> (N,)."""
    logits = model(idx[:, :-1])[:, n_prompt - 1 :]  # (N, R, V): the predictions of the reply tokens
    logp = torch.gather(F.log_softmax(logits, -1), 2, idx[:, n_prompt:].unsqueeze(-1)).squeeze(-1)  # (N, R)
    return (logp * reply_mask).sum(1)


def prompts_by_length(tokenizer, questions: list[str]) -> dict[int, list[list[int]]]:
    """The chat prompts of ``questions``, encoded, by length: prompts of equal length are sampled together."""
    by_length: dict[int, list[list[int]]] = {}
    for q in questions:
        ids = tokenizer.encode(chat_prompt(q))
        by_length.setdefault(len(ids), []).append(ids)
    return by_length


@torch.no_grad()
def rollout(model, tokenizer, prompts: torch.Tensor, cfg: RLHFConfig, generator: torch.Generator,
            sampler: Sampler = sample_next) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample a reply to each prompt (N, P): returns the prompts and their replies, right-padded and
    cropped to the block, (N, P + R), and the mask of the reply tokens (N, P + R - P)."""
    stop = {tokenizer.special_tokens[s] for s in (BOS, USER, END)}
    pad = tokenizer.special_tokens["<|pad|>"]
    replies = generate(model, prompts, cfg.max_new_tokens, cfg.temperature, stop_ids=stop, generator=generator,
                       sampler=sampler)
    R = max(map(len, replies))
    reply = torch.full((len(replies), R), pad)
    reply_mask = torch.zeros(len(replies), R)
    for i, r in enumerate(replies):
        reply[i, : len(r)], reply_mask[i, : len(r)] = torch.tensor(r), 1
    idx = torch.cat([prompts, reply], 1)[:, : model.config.block_size]  # (N, P + R)
    return idx, reply_mask[:, : idx.shape[1] - prompts.shape[1]]


@torch.no_grad()
def kl_divergence(policy, reference, tokenizer, questions: list[str], cfg: RLHFConfig, samples: int = 4,
                  seed: int = 1) -> float:
    """KL(policy || reference) per reply, estimated on replies the policy samples: the mean over
    ``samples`` replies to each question of sum_t [log pi(y_t) - log pi_ref(y_t)]."""
    policy.eval(), reference.eval()
    gen = torch.Generator().manual_seed(seed)
    total, n = 0.0, 0
    for n_prompt, group in sorted(prompts_by_length(tokenizer, questions).items()):
        prompts = torch.tensor(group).repeat_interleave(samples, 0)  # (N, P)
        idx, reply_mask = rollout(policy, tokenizer, prompts, cfg, gen)
        kl = reply_logprobs(policy, idx, n_prompt, reply_mask) - reply_logprobs(reference, idx, n_prompt, reply_mask)
        total, n = total + kl.sum().item(), n + len(kl)
    return total / n


def rlhf(chat_model, reward_model, tokenizer, questions: list[str], cfg: RLHFConfig,
         sampler: Sampler = sample_next, optimizer: Optimizer = adamw) -> tuple:
    """RLOO with a KL penalty from ``chat_model``. Returns the policy and curves (reward, KL per step).

    Each step samples the replies of all its prompts in one batch, without gradients (with the
    KV cache when the model supports it; ``sampler`` picks the tokens), then computes their
    log-probabilities again, with gradients, in one forward pass."""
    policy, reference = copy.deepcopy(chat_model), chat_model.eval()
    opt = optimizer(list(policy.parameters()), cfg.lr, (0.9, 0.999), EPS, 0.0)  # torch's default betas
    gen = torch.Generator().manual_seed(cfg.seed)
    curves = {"reward": [], "kl": []}
    by_length = prompts_by_length(tokenizer, questions)
    lengths = sorted(by_length)
    k = cfg.samples_per_prompt
    for step in range(cfg.steps):
        n_prompt = lengths[int(torch.randint(len(lengths), (1,), generator=gen))]
        group = by_length[n_prompt]
        pick = torch.randint(len(group), (cfg.prompts_per_step,), generator=gen)
        prompts = torch.tensor([group[i] for i in pick]).repeat_interleave(k, 0)  # (N, P), N = prompts * k
        idx, reply_mask = rollout(policy, tokenizer, prompts, cfg, gen, sampler)
        policy.train()
        logp = reply_logprobs(policy, idx, n_prompt, reply_mask)  # (N,)
        with torch.no_grad():
            kl = logp.detach() - reply_logprobs(reference, idx, n_prompt, reply_mask)  # (N,) sampled estimate
            score = rewards(reward_model, idx, n_prompt + reply_mask.sum(1).long())
            total = (score - cfg.kl_coef * kl).view(-1, k)  # (prompts, k)
            baseline = (total.sum(1, keepdim=True) - total) / (k - 1)  # leave-one-out mean
            advantage = (total - baseline).view(-1)
        loss = -(advantage * logp).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        curves["reward"].append(score.mean().item())
        curves["kl"].append(kl.mean().item())
    return policy.eval(), curves
