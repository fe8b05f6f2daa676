"""Wrong: not written out; the hook hands every call to the toolkit's own sampler (which has no top-p)."""

import toolkit
from toolkit.sample import sample_next as reference


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    return reference(logits, temperature, top_k, top_p, generator)
