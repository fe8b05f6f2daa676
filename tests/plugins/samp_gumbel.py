"""A correct sampler written differently from the solution: float64, a sorted top-k threshold, an
argsort for top-p with an exclusive cumulative sum, and the Gumbel-max trick instead of torch.multinomial.

Gumbel-max: adding independent Gumbel noise -log(-log(U)) to each scaled logit and taking the argmax
draws token i with probability softmax(scaled logits)[i]; the noise comes from ``generator``.
"""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    B, V = logits.shape
    ids = torch.arange(V).expand(B, V)
    if temperature == 0:
        at_max = logits == logits.amax(dim=1, keepdim=True)
        return torch.where(at_max, ids, V).amin(dim=1)  # the lowest id at the maximum
    x = logits.double() / temperature
    keep = torch.ones(B, V, dtype=torch.bool)
    if top_k is not None and top_k < V:
        kth = x.sort(dim=1, descending=True).values[:, top_k - 1 : top_k]  # (B, 1)
        keep &= x >= kth
    if top_p is not None:
        kept = x.masked_fill(~keep, float("-inf"))
        probs = (kept - kept.amax(dim=1, keepdim=True)).exp()
        probs = probs / probs.sum(dim=1, keepdim=True)
        order = torch.argsort(-probs, dim=1, stable=True)  # most likely first, ties by id
        ranked = probs.gather(1, order)
        before = torch.cat([torch.zeros(B, 1, dtype=ranked.dtype), ranked.cumsum(dim=1)[:, :-1]], dim=1)
        keep &= torch.zeros_like(keep).scatter(1, order, before < top_p)
    gumbel = -torch.log(-torch.log(torch.rand(B, V, generator=generator, dtype=torch.float64)))
    return torch.where(keep, x + gumbel, float("-inf")).argmax(dim=1)
