"""Wrong: top-k keeps the first k ids of the vocabulary, not the k largest logits."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        logits = logits.clone()
        logits[:, top_k:] = float("-inf")  # should be: every logit below the k-th largest
    if top_p is not None:
        probs = torch.softmax(logits, dim=-1)
        ranked, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        drop = (ranked.cumsum(-1) - ranked) >= top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)
