"""Put the repository root on sys.path, so that tests can ``import toolkit`` and ``import solutions``.

``make test`` runs two test files at a time (pytest-xdist, ``-n 2 --dist loadfile``): while one
trains, the other's torch threads must sleep rather than spin, or two pools on 2 cores train 3.7x
slower. OpenMP's passive wait policy (read when torch is first imported) changes no result.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
