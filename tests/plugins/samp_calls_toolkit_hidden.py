"""Wrong: not written out, and hiding it from a reader: the toolkit's sampler is looked up by a
string built at run time, so no name in this file says `toolkit.sample`."""

import importlib

import toolkit

_module = importlib.import_module(".".join(["toolkit", "sam" + "ple"]))
_draw = getattr(_module, "_".join(["sample", "next"]))


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    return _draw(logits, temperature, top_k, top_p, generator)
