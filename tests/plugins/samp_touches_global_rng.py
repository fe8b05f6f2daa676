"""Wrong: every token is drawn from `generator`, but the sampler also re-seeds torch's global random
generator on each call ("for reproducibility"), which resets the randomness of everything else in the
program (dropout, data shuffling, other samplers) to the same sequence every time it is called.

The draws are right, so only ``uses_generator``'s "global RNG untouched" catches it; under ``toolkit
grade`` the sampler runs in the submission's own process, so that is where the check must look.
"""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    torch.manual_seed(0)  # BUG: the global generator is not the sampler's to touch
    if temperature == 0:
        return logits.argmax(-1)
    scaled = logits / temperature
    if top_k is not None:
        kth = scaled.topk(min(top_k, scaled.shape[-1]), dim=-1).values[..., -1, None]  # (B, 1)
        scaled = torch.where(scaled < kth, -torch.inf, scaled)
    probs = scaled.softmax(-1)  # (B, V)
    if top_p is not None:
        ranked, order = probs.sort(dim=-1, descending=True, stable=True)
        before = ranked.cumsum(-1) - ranked  # the mass ranked above each token
        cut = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, before >= top_p)
        probs = probs.masked_fill(cut, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
