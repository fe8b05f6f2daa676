"""What every benchmark script does last: write its figures as JSON and list the targets it missed."""

from __future__ import annotations

import json
from pathlib import Path


def report(out: Path, figures: dict, missed: list[str], **settings) -> int:
    """Write ``out`` (the environment, ``settings``, figures, missed targets); the exit code: 1 if any was missed."""
    from toolkit.pipeline import PipelineConfig
    from toolkit.runner import environment

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": environment(PipelineConfig()), **settings, "figures": figures,
                               "missed": missed}, indent=1) + "\n")
    print(f"written {out}")
    for m in missed:
        print(f"MISSED: {m}")
    return 1 if missed else 0
