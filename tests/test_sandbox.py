"""``toolkit.grading.sandbox`` and ``intake``: the child's command and limits, and reading submissions safely."""

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit.grading import cgroup, intake, sandbox

ROOT = Path(__file__).resolve().parents[1]
needs_bwrap = pytest.mark.skipif(not sandbox.bwrap_works(),
                                 reason="bubblewrap is not installed or cannot create namespaces here")


def _box(tmp_path: Path, models=()):
    (tmp_path / "sub.py").write_text("x = 1\n")
    return sandbox.box(intake.inspect("sub", tmp_path / "sub.py"), None, list(models))


def test_a_child_may_read_the_base_and_chat_models_and_the_data_only(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("base-1.pt", "sft-2.pt", "data-4.pt", "reward-3.pt", "notes.txt", "dial-5.json"):
        (cache / name).write_text(name)
    (cache / "base-9.pt").symlink_to(cache / "reward-3.pt")  # a reward model under a base model's name
    elsewhere = tmp_path / "kept" / "base-7.pt"
    elsewhere.parent.mkdir()
    elsewhere.write_text("base-7.pt")
    (cache / "base-7.pt").symlink_to(elsewhere)  # a base model kept outside the cache: followed
    models = sandbox.cached_models(cache)
    assert [p.name for p in models] == ["base-1.pt", "base-7.pt", "data-4.pt", "sft-2.pt"]
    argv, _ = sandbox.command(["python"], tmp_path, models, sandbox.Limits())
    if sandbox.bwrap_works():  # the child sees the file itself under the link's name
        assert str(elsewhere) in argv and str(sandbox.INSIDE_WORK / "cache" / "base-7.pt") in argv


def test_the_box_holds_a_copy_and_is_removed(tmp_path):
    with _box(tmp_path) as box:
        assert (box / "submission" / "sub.py").read_text() == "x = 1\n"
        made = box
    assert not made.exists()


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
    with _box(tmp_path) as box:
        cmd, env = sandbox.command([sys.executable, "-c", "pass"], box, [], sandbox.Limits())
        assert cmd == [sys.executable, "-c", "pass"] and env["HOME"] == str(box / "work")
        assert sandbox.submission_inside(box, intake.inspect("sub", tmp_path / "sub.py")) == box / "submission" / "sub.py"


@needs_bwrap
def test_bwrap_hides_solutions_hidden_checks_the_network_and_the_graders_folder(tmp_path, monkeypatch):
    canary = tmp_path / "grader-cwd"
    canary.mkdir()
    (canary / "other_student.py").write_text("secret\n")
    monkeypatch.chdir(canary)
    monkeypatch.syspath_prepend(str(canary))  # as under `python -m toolkit grade` run from that folder
    hidden, solutions = str(ROOT / "graders" / "hidden"), str(ROOT / "solutions")
    probe = ("import os, socket\n"
             f"print(sorted(os.listdir({hidden!r})), os.path.exists({solutions!r}), os.listdir('/sandbox/submission'),"
             f" os.path.exists({str(canary)!r}))\n"
             "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\nexcept OSError as e:\n    print(e.errno)\n")
    with _box(tmp_path) as box:
        cmd, env = sandbox.command([sys.executable, "-c", probe], box, [], sandbox.Limits())
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[] False ['sub.py'] False", "101"]


@needs_bwrap
def test_bwrap_scratch_space_is_capped(tmp_path):
    write = ("import os\n"
             "for d in ('/tmp', os.getcwd()):\n"
             "    try:\n"
             "        with open(os.path.join(d, 'big'), 'wb') as f:\n"
             "            for _ in range(64):\n"
             "                f.write(b'x' * (1 << 20))\n"
             "        print('wrote', d)\n"
             "    except OSError as e:\n"
             "        print('refused', e.errno)\n")
    with _box(tmp_path) as box:
        cmd, env = sandbox.command([sys.executable, "-c", write], box, [], sandbox.Limits(scratch=8 << 20))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["refused", "28", "refused", "28"], proc.stderr  # ENOSPC, in /tmp and the work folder


# -- intake ---------------------------------------------------------------------------------
def test_intake_refuses_links_depth_count_and_size(tmp_path, monkeypatch):
    ok = tmp_path / "ok"
    (ok / "pkg").mkdir(parents=True)
    (ok / "pkg" / "a.py").write_text("a = 1\n")
    assert intake.inspect("ok", ok).files == ("pkg/a.py",)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "pagemap").symlink_to("/proc/self/pagemap")
    assert "linked/pagemap is a symbolic link" in intake.inspect("linked", linked).refused
    (tmp_path / "top.py").symlink_to("/etc/passwd")
    assert "top.py is a symbolic link" in intake.inspect("top", tmp_path / "top.py").refused
    deep = tmp_path / "deep"
    (deep / "/".join("d" * (intake.MAX_DEPTH + 1))).mkdir(parents=True)
    assert "levels deep" in intake.inspect("deep", deep).refused
    many = tmp_path / "many"
    many.mkdir()
    for i in range(intake.MAX_FILES + 1):
        (many / f"{i}.txt").write_text("")
    assert f"more than {intake.MAX_FILES} files" in intake.inspect("many", many).refused
    monkeypatch.setattr(intake, "MAX_BYTES", 100)
    (tmp_path / "big.py").write_text("x" * 101)
    assert "bytes, more than" in intake.inspect("big", tmp_path / "big.py").refused


def test_a_refused_submission_is_a_row_not_an_error(tmp_path):
    (tmp_path / "alice.py").write_text("x = 1\n")
    (tmp_path / "mallory").symlink_to(tmp_path)
    found = intake.find_submissions(tmp_path)
    assert list(found) == ["alice", "mallory"] and found["mallory"].refused and not found["alice"].refused


def test_remove_tree_removes_any_depth_and_read_only_folders(tmp_path):
    top = tmp_path / "x"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for _ in range(1500):  # deeper than recursion, and than PATH_MAX as one path
        os.mkdir("dd", dir_fd=fd)
        new = os.open("dd", os.O_RDONLY, dir_fd=fd)
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, dir_fd=new))
        os.close(fd)
        fd = new
    os.fchmod(fd, 0o500)
    os.close(fd)
    (tmp_path / "elsewhere").write_text("kept")
    (top / "link").symlink_to(tmp_path / "elsewhere")
    intake.remove_tree(top)
    assert not top.exists() and (tmp_path / "elsewhere").read_text() == "kept"


def test_a_grader_sweeps_the_boxes_of_graders_no_longer_alive(tmp_path, monkeypatch):
    """A grader killed with kill -9 leaves its box; the next grader removes it (and never the box
    of a grader still running, nor anything not named as a box)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(sandbox.tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{sandbox.BOX_PREFIX}{dead.pid}-abc"
    (stale / "submission" / "deep").mkdir(parents=True)
    (stale / "submission" / "deep" / "attn_no_mask.py").write_text("x = 1\n")
    live = tmp_path / f"{sandbox.BOX_PREFIX}{os.getppid()}-def"
    live.mkdir()
    other = tmp_path / "toolkit-grade-notes"
    other.mkdir()
    sandbox.sweep_boxes.cache_clear()
    try:
        assert sandbox.sweep_boxes() == [stale]
        assert not stale.exists() and live.exists() and other.exists()
        (tmp_path / "sub").mkdir()
        with _box(tmp_path / "sub") as path:  # a new box is named by its grader's pid
            assert path.parent == tmp_path and path.name.startswith(f"{sandbox.BOX_PREFIX}{os.getpid()}-")
        assert not path.exists()
    finally:
        sandbox.sweep_boxes.cache_clear()


needs_cgroup = pytest.mark.skipif(not cgroup.mode(), reason="no writable cgroup hierarchy here (not root, or no delegation)")


@needs_cgroup
def test_a_childs_cgroup_bounds_its_processes_counts_its_cpu_and_ends_them_all(tmp_path):
    """Everything a child starts, in any session, is in its group: at most pids processes, its CPU time
    counted, and every one of them killed by the group; the folders go afterwards."""
    share = cgroup.Share(cpus=0.5, pids=8, memory=512 << 20)
    script = ("import os, time\nn = 0\nfor _ in range(20):\n    try:\n        pid = os.fork()\n    except OSError:\n"
              "        break\n    if pid == 0:\n        os.setsid()\n        while True: pass\n    n += 1\n"
              "print(n, flush=True)\ntime.sleep(60)\n")
    with cgroup.group(share) as group:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=group.join)
        started = int(proc.stdout.readline())
        assert started < 8, f"{started} processes started past pids.max 8"
        time.sleep(1.0)
        assert 0.1 < group.cpu_seconds() < 1.0 * 1.5, group.cpu_seconds()  # a quota of half a CPU for ~1 s
        assert len(group.pids()) == started + 1
        group.kill()
        assert group.pids() == [] and proc.wait(timeout=5) == -9
    assert not any(f.exists() for f in group.folders)


def test_cgroups_are_off_with_toolkit_cgroup_off(monkeypatch):
    monkeypatch.setenv("TOOLKIT_CGROUP", "off")
    cgroup._parents.cache_clear()
    try:
        assert cgroup.mode() == "" and cgroup.make(cgroup.Share(1, 8, 1 << 30)) is None
    finally:
        cgroup._parents.cache_clear()
