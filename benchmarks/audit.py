"""What the audit of a child's gradients costs a submission (issue 31), measured in one run.

    python -u benchmarks/audit.py [--repeats 1] [-c attention -c reward] [--out benchmarks/results/audit.json]

Grades one copy of the instructor's solutions with ``toolkit grade`` (behavioural checks included,
``--workers 1``) twice per repeat, taking turns: as shipped, and with the audit switched off
(``toolkit.grading.autograd.AUDIT_GAP`` set beyond any run's calls in the grading process). The
figures are medians: the wall-clock seconds of the whole command, each check's own seconds, and
their ratio audited / not audited; the grades must be the same. These machines are shared: quote
the figures of one run on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import report  # noqa: E402
from benchmarks.grading import make_class  # noqa: E402

OFF = "import toolkit.grading.autograd as a; a.AUDIT_GAP = 10**12; import runpy; runpy.run_module('toolkit.cli', run_name='__main__')"


def grade(klass: Path, out: Path, components: list[str], audited: bool) -> tuple[float, dict, dict]:
    """Wall seconds, each check's seconds and each check's score of one ``toolkit grade``."""
    import json
    import sqlite3
    import subprocess
    import time

    head = ["-m", "toolkit.cli"] if audited else ["-c", OFF]
    cmd = [sys.executable, *head, "grade", str(klass), "--out", str(out), "--workers", "1", "--timeout", "1200",
           *[a for c in components for a in ("-c", c)]]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"exit {proc.returncode}: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    with sqlite3.connect(out / "results.sqlite") as db:
        (record,), = db.execute("SELECT record FROM results")
    results = json.loads(record)["results"]
    return wall, {r["name"]: r["seconds"] for r in results}, {r["name"]: r["score"] for r in results}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("-c", dest="components", action="append", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "audit.json")
    args = ap.parse_args()
    components = args.components or ["attention", "reward"]
    runs = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="toolkit-audit-") as tmp:
        klass = make_class(Path(tmp) / "class", 1)
        for rep in range(args.repeats):
            for audited in (True, False):
                runs[audited].append(grade(klass, Path(tmp) / f"out-{rep}-{audited}", components, audited))
                print(f"repeat {rep}, audited {audited}: {runs[audited][-1][0]:.1f} s", flush=True)
    scores = {audited: runs[audited][0][2] for audited in runs}
    missed = [] if scores[True] == scores[False] else ["the same grades with and without the audit"]
    wall = {audited: statistics.median(r[0] for r in runs[audited]) for audited in runs}
    checks = {name: {"audited_s": statistics.median(r[1][name] for r in runs[True]),
                     "not_audited_s": statistics.median(r[1][name] for r in runs[False])}
              for name in runs[True][0][1]}
    for fig in checks.values():
        fig["ratio"] = round(fig["audited_s"] / max(fig["not_audited_s"], 1e-9), 3)
    figures = {"wall_audited_s": round(wall[True], 1), "wall_not_audited_s": round(wall[False], 1),
               "wall_ratio": round(wall[True] / wall[False], 3), "checks": checks}
    print({k: v for k, v in figures.items() if k != "checks"})
    for name, fig in sorted(checks.items(), key=lambda kv: -kv[1]["audited_s"])[:8]:
        print(f"  {name}: {fig['audited_s']:.1f} s audited, {fig['not_audited_s']:.1f} s not ({fig['ratio']}x)")
    return report(args.out, figures, missed, components=components, repeats=args.repeats)


if __name__ == "__main__":
    raise SystemExit(main())
