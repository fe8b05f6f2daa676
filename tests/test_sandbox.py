"""``toolkit.sandbox``: the command, the limits and the output cap of one grading child."""

import io
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit import sandbox

ROOT = Path(__file__).resolve().parents[1]
needs_bwrap = pytest.mark.skipif(not sandbox.bwrap_works(),
                                 reason="bubblewrap is not installed or cannot create namespaces here")


def _box(tmp_path: Path) -> Path:
    (tmp_path / "sub.py").write_text("x = 1\n")
    box = tmp_path / "box"
    box.mkdir()
    sandbox.prepare_box(box, tmp_path / "sub.py", None)
    return box


def test_a_box_gets_copies_of_the_base_and_chat_models_only(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("base-1.pt", "sft-2.pt", "reward-3.pt", "notes.txt"):
        (cache / name).write_text(name)
    (tmp_path / "sub.py").write_text("x = 1\n")
    box = tmp_path / "box"
    box.mkdir()
    sandbox.prepare_box(box, tmp_path / "sub.py", None, cache)
    copied = box / "work" / "cache"
    assert sorted(p.name for p in copied.iterdir()) == ["base-1.pt", "sft-2.pt"]
    assert not any(p.is_symlink() for p in copied.iterdir())  # copies: a child never writes into the shared cache


def test_mode_names_what_isolates():
    assert sandbox.mode() in ("bwrap", "rlimits only")


def test_limits_apply_in_the_child(tmp_path):
    limits = sandbox.Limits(cpu_seconds=7, memory=2 << 30, nproc=4000, file_size=1 << 20)
    code = "import resource as r; print([r.getrlimit(x)[0] for x in (r.RLIMIT_CPU, r.RLIMIT_AS, r.RLIMIT_FSIZE)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         preexec_fn=lambda: sandbox.set_limits(limits)).stdout
    assert out.strip() == str([7, 2 << 30, 1 << 20])
    big = "open('big', 'wb').write(b'x' * (2 << 20))"
    proc = subprocess.run([sys.executable, "-c", big], cwd=tmp_path, capture_output=True,
                          preexec_fn=lambda: sandbox.set_limits(limits))
    assert proc.returncode != 0  # SIGXFSZ or an OSError: no file past RLIMIT_FSIZE


def test_drain_keeps_at_most_the_limit():
    keep: list = []
    sandbox.drain(io.BytesIO(b"x" * 1_000_000), 1000, keep).join()
    assert keep == [b"x" * 1000]


def test_the_fallback_command_is_the_python_command(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_works", lambda: False)
    box = _box(tmp_path)
    cmd, env = sandbox.command([sys.executable, "-c", "pass"], box)
    assert cmd == [sys.executable, "-c", "pass"] and env["HOME"] == str(box / "work")
    assert sandbox.submission_inside(box, tmp_path / "sub.py") == box / "submission" / "sub.py"


@needs_bwrap
def test_bwrap_hides_solutions_hidden_checks_and_the_network(tmp_path):
    box = _box(tmp_path)
    hidden, solutions = str(ROOT / "graders" / "hidden"), str(ROOT / "solutions")
    probe = ("import os, socket\n"
             f"print(sorted(os.listdir({hidden!r})), os.path.exists({solutions!r}), os.listdir('/sandbox/submission'))\n"
             "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\nexcept OSError as e:\n    print(e.errno)\n")
    cmd, env = sandbox.command([sys.executable, "-c", probe], box)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[] False ['sub.py']", "101"]
