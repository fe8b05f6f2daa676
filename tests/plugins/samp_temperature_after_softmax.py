"""Wrong: the temperature divides the probabilities, after the softmax, which torch.multinomial then renormalises away."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(dim=-1)
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        probs = torch.softmax(logits, dim=-1)
        ranked, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        drop = (ranked.cumsum(-1) - ranked) >= top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = torch.softmax(logits, dim=-1) / temperature  # should be softmax(logits / temperature)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
