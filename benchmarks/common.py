"""What every benchmark script shares: the machine's matmul speed, and writing its figures as JSON
with the targets it missed."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Median FLOP/s of an n x n float32 matmul with the pipeline's pinned threads: how fast this
    shared machine is right now, to compare figures of different sessions."""
    import torch

    from toolkit.config import PipelineConfig

    torch.set_num_threads(PipelineConfig().threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def report(out: Path, figures: dict, missed: list[str], **settings) -> int:
    """Write ``out`` (the environment, the matmul speed now, ``settings``, figures, missed targets);
    the exit code: 1 if any was missed."""
    from toolkit.config import PipelineConfig
    from toolkit.runner import environment

    speed = matmul_peak() / 1e9
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": {**environment(PipelineConfig()), "matmul_GFLOPs_at_end": round(speed, 1)},
                               **settings, "figures": figures, "missed": missed}, indent=1) + "\n")
    print(f"written {out} (float32 matmul at the end: {speed:.0f} GFLOP/s)")
    for m in missed:
        print(f"MISSED: {m}")
    return 1 if missed else 0
