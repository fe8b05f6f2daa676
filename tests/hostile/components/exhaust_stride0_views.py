"""Hostile: patches out the child's own copy of what it sends, then returns four stride-0 views of
one int64 element, 2**26 elements each: a 2 KB answer that a grader which copies what it receives
turns into 2 GB; honest score: 0."""
import sys

import torch

import toolkit

sys.modules["__main__"]._detached = lambda x: x  # the child runs as __main__ (toolkit.grading.child)


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    t = torch.zeros(1, dtype=torch.long).expand(1 << 26)
    return [t, t, t, t]
