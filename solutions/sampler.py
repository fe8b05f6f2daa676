"""Solution: the next token of each row, greedy or sampled with temperature, top-k and top-p."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(dim=-1)  # (B,): greedy; on ties the lowest id
    logits = logits / temperature  # (B, V); a new tensor, the caller's logits are left alone
    if top_k is not None:
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1): the k-th largest of each row
        logits = logits.masked_fill(logits < kth, float("-inf"))  # ties with the k-th value stay in
    if top_p is not None:
        probs = torch.softmax(logits, dim=-1)  # (B, V), renormalised over what top-k kept
        ranked, order = torch.sort(probs, dim=-1, descending=True, stable=True)  # ties: lower id first
        mass_before = ranked.cumsum(dim=-1) - ranked  # (B, V): mass of the tokens ranked above each one
        drop_ranked = mass_before >= top_p  # p was reached before this token: it goes (never the top one)
        drop = drop_ranked.scatter(-1, order, drop_ranked)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # softmax subtracts each row's max: no overflow at 1e4
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # (B,)
