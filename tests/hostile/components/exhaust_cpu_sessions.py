"""Hostile: at import, starts processes, each in a session of its own, that spin until killed (as many
as its process limit allows), then waits 12 s before it answers, its spinners running on until the child ends; its sampler is correct (samp_gumbel's).
Where the kernel gives each session its own share of the CPU (``kernel.sched_autogroup_enabled``),
dozens of sessions take dozens of shares and starve the student graded beside it into a timeout; in a
cgroup of its own, they all share one. Honest score: 14 (a correct sampler)."""
import os
import time

for _ in range(240):
    try:
        pid = os.fork()
    except OSError:  # its process limit
        break
    if pid == 0:
        os.setsid()
        while True:
            pass
time.sleep(12)

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
