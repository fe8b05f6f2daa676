"""Hostile: the toolkit's own sampler, which draws from `generator`, after re-seeding torch's global
generator and drawing from it on every call: a grader that watches the global generator in its own
process, not where the sampler runs, misses it; honest score: 12 (all but uses_generator and
written_out)."""
import torch

import toolkit
from toolkit.sample import sample_next


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    torch.manual_seed(1234)
    torch.rand(3)
    return sample_next(logits, temperature, top_k, top_p, generator)
