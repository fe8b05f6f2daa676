"""Hostile: a sampler that is greedy whenever the vocabulary has at most 100 tokens (every unit check's
logits used to) and otherwise samples with the toolkit's own sampler, looked up under a name built at run
time (no name in this file says toolkit.sample). written_out, which watched one call on 6 x 12 logits,
saw only the greedy path: greedy and written_out, 3 under --fast (8/19 without); honest score: 2 (greedy
only: the sampling is the toolkit's, which written_out refuses)."""
import importlib

import toolkit

_draw = getattr(importlib.import_module(".".join(["toolkit", "sam" + "ple"])), "_".join(["sample", "next"]))


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if logits.shape[-1] <= 100:
        return logits.argmax(-1)
    return _draw(logits, temperature, top_k, top_p, generator)
