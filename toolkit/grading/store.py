"""The results store of a batch: ``GRADES_DIR/results.sqlite`` (stdlib ``sqlite3``).

One row per graded submission, written in its own transaction as soon as it finishes, keyed
by the student, the content hash of the submission (its files' bytes) and the grader version
(the toolkit's and the graders' sources, and the options). A batch killed half-way loses
nothing already graded; run again, it grades only what has no row for the same key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict
from pathlib import Path

from toolkit.grading.record import Record
from toolkit.paths import GRADERS, ROOT, TOOLKIT


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def grader_version(options, sandbox_mode: str) -> str:
    """sha256 of what decides a grade besides the submission: sources, snapshots, options, sandbox
    (``sandbox_mode``: the isolation and the cgroups, which decide what ``--timeout`` counts)."""
    h = hashlib.sha256(json.dumps([asdict(options), sandbox_mode], sort_keys=True, default=str).encode())
    for folder in (TOOLKIT, GRADERS):
        for f in _files(folder):
            if f.suffix in (".py", ".json", ".tsv"):
                h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


class Store:
    """Records by (student, content hash, grader version)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, timeout=30)
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS results (student TEXT, content_hash TEXT, version TEXT, "
                            "record TEXT, PRIMARY KEY (student, content_hash, version))")

    def get(self, student: str, content: str, version: str) -> Record | None:
        row = self.db.execute("SELECT record FROM results WHERE student=? AND content_hash=? AND version=?",
                              (student, content, version)).fetchone()
        if row is None:
            return None
        try:
            return Record.from_json(row[0])
        except (ValueError, TypeError, KeyError):  # a row of an older layout: grade again
            return None

    def put(self, student: str, content: str, version: str, record: Record) -> None:
        with self.db:  # one transaction
            self.db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
                            (student, content, version, record.to_json()))

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        self.db.close()
