"""A correct sampler written differently from the solution: plain Python per row (lists, math.exp,
sorted with a key), then one torch.multinomial per row, each with ``generator``."""

import math

import torch

import toolkit


def row_probabilities(row, temperature, top_k, top_p):
    x = [v / temperature for v in row]
    if top_k is not None and top_k < len(x):
        kth = sorted(x, reverse=True)[top_k - 1]
        x = [v if v >= kth else -math.inf for v in x]
    top = max(x)
    w = [math.exp(v - top) for v in x]  # exp(-inf) = 0
    total = sum(w)
    p = [v / total for v in w]
    if top_p is not None:
        mass, nucleus = 0.0, set()
        for i in sorted(range(len(p)), key=lambda i: (-p[i], i)):  # most likely first, ties by id
            if mass >= top_p:
                break
            nucleus.add(i)
            mass += p[i]
        p = [v if i in nucleus else 0.0 for i, v in enumerate(p)]
    return p


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    out = []
    for row in logits.tolist():
        if temperature == 0:
            out.append(max(range(len(row)), key=lambda i: (row[i], -i)))  # the lowest id at the maximum
        else:
            weights = torch.tensor(row_probabilities(row, temperature, top_k, top_p), dtype=torch.float64)
            out.append(torch.multinomial(weights, 1, generator=generator).item())
    return torch.tensor(out, dtype=torch.long)
