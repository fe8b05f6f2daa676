"""toolkit: build a GPT from scratch, one plugin at a time, and grade it.

Students write plugins with ``@toolkit.hookimpl``; see ``toolkit.hookspecs`` for the hooks.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("toolkit")
"""Marker for a student's hook implementation: ``@toolkit.hookimpl``."""
