"""Wrong: a well-known book's sampling step, made a hook: temperature and top-k are right, but there is
no top-p at all (``top_p`` is accepted and ignored)."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if top_k is not None:  # top-k first: dividing by a positive temperature keeps the order
        top_logits, _ = torch.topk(logits, min(top_k, logits.shape[-1]))
        min_val = top_logits[:, -1:]
        logits = torch.where(logits < min_val, torch.tensor(float("-inf")), logits)
    if temperature > 0.0:
        logits = logits / temperature
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
    return torch.argmax(logits, dim=-1)  # top_p: nothing
