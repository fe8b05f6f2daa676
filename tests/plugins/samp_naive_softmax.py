"""Wrong: a softmax written as exp(x) / sum(exp(x)), without subtracting the maximum: exp(1e4) is inf."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.exp(logits)  # overflows for logits above 88 (float32)
    probs = probs / probs.sum(dim=-1, keepdim=True)
    if top_p is not None:
        ranked, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        drop = (ranked.cumsum(-1) - ranked) >= top_p
        probs = probs.masked_fill(drop.scatter(-1, order, drop), 0.0)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
