"""Put the repository root on sys.path, so that tests can ``import toolkit`` and ``import solutions``.

``make test`` runs two test files at a time (pytest-xdist, ``-n 2 --dist loadfile``): while one
trains, the other's torch threads must sleep rather than spin, or two pools on 2 cores train 3.7x
slower. OpenMP's passive wait policy (read when torch is first imported) changes no result.

The files are handed out longest first, by the seconds each took in the suite's last recorded
run (``benchmarks/results/suite.json``; a file not in it goes first), so that no long file starts
when the other worker has almost nothing left (``--no-loadscope-reorder`` in ``addopts`` keeps
this order: xdist would otherwise order the files by how many tests they hold).
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(config, items):
    try:
        seconds = {name: f["seconds"] for name, f in
                   json.loads((ROOT / "benchmarks" / "results" / "suite.json").read_text())["figures"]["files"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return
    items.sort(key=lambda item: -seconds.get(item.nodeid.split("::")[0], float("inf")))  # stable: a file's order stays
