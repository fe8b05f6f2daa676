"""Broken: the hook itself raises while building the module."""

import toolkit


@toolkit.hookimpl
def toolkit_attention(config):
    raise RuntimeError(f"n_head={config.n_head} is not supported yet")
