"""`toolkit release`: the student release holds no solution code and grades on public checks only."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.release import build_release, leaks, secret_lines

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return build_release(tmp_path_factory.mktemp("release") / "out")


def test_release_holds_no_solution_and_no_hidden_check(release):
    files = {p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()}
    assert not any(f.startswith(("solutions/", "tests/", "graders/gradescope/")) for f in files)
    assert not [f for f in files if f.startswith("graders/hidden/")]
    assert {"assignments/tokenizer/tokenizer.ipynb", "assignments/attention/attention.ipynb",
            "assignments/sft_mask/sft_mask.ipynb", "assignments/reward/reward.ipynb", "graders/snapshots/attention.json",
            "toolkit/cli.py"} <= files
    assert leaks(release) == []
    for notebook in release.glob("assignments/*/*.ipynb"):
        assert "raise NotImplementedError()" in notebook.read_text()
        assert "BEGIN SOLUTION" not in notebook.read_text()


def test_release_readme_names_the_project_not_the_clone_s_folder(release):
    assert (release / "README.md").read_text().startswith("# toolkit: student release\n")


def test_leak_scan_finds_a_planted_line_of_solution_code(release, tmp_path):
    line = sorted(secret_lines())[len(secret_lines()) // 2]
    planted = tmp_path / "copy"
    (planted / "toolkit").mkdir(parents=True)
    (planted / "toolkit" / "extra.py").write_text(f"x = 1\n    {line}\n")
    assert leaks(planted) == [f"toolkit/extra.py: {line}"]


def test_release_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "something").write_text("")
    with pytest.raises(FileExistsError, match="not empty"):
        build_release(tmp_path)


def test_toolkit_run_in_the_release_grades_on_public_checks_only(release):
    env = {**os.environ, "PYTHONPATH": str(release)}
    out = subprocess.run([sys.executable, "-m", "toolkit.cli", "run", str(ROOT / "tests/plugins/attn_einsum.py"),
                          "--fast"], cwd=release, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "total: 7 / 7 (public checks only)" in out.stdout
    where = subprocess.run([sys.executable, "-c", "import toolkit; print(toolkit.__file__)"], cwd=release, env=env,
                           capture_output=True, text=True).stdout
    assert where.startswith(str(release))  # the release's own toolkit, not the checkout's


@pytest.mark.parametrize("exists", [False, True])
def test_without_nbgrader_release_names_the_install_command_and_writes_nothing(tmp_path, monkeypatch, exists):
    """After `make demo` (no nbgrader): exit 2, one sentence with the command that installs the extra
    into this interpreter from this checkout; OUT_DIR as it was (absent, or empty), so a rerun works."""
    from click.testing import CliRunner

    from toolkit.cli import main

    out = tmp_path / "release"
    if exists:
        out.mkdir()
    monkeypatch.setitem(sys.modules, "nbgrader", None)  # as if not installed
    result = CliRunner().invoke(main, ["release", str(out)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: toolkit release needs nbgrader, which is not installed; install it with: ")
    assert f"{sys.executable} -m pip install -c {ROOT / 'constraints.txt'} -e '{ROOT}[course]'" in result.stderr
    assert "toolkit[" not in result.stderr
    assert (list(out.iterdir()) == []) if exists else not out.exists()


def test_a_release_that_fails_half_way_writes_nothing(tmp_path, monkeypatch):
    """nbgrader failing after the toolkit was copied: OUT_DIR is not made."""
    from toolkit import course

    def fails(root, assignment="*"):
        raise RuntimeError("nbgrader generate_assignment failed (exit 1)")

    monkeypatch.setattr(course, "generate", fails)
    with pytest.raises(RuntimeError, match="generate_assignment"):
        build_release(tmp_path / "release")
    assert list(tmp_path.iterdir()) == []


def test_toolkit_run_in_the_release_measures_on_public_held_out_data_and_says_so(release):
    """The release has no instructor's seed (graders/hidden is left out): its checks draw the held-out
    text and speed's fresh text from the public seed, grade a correct tokenizer in full, and say so."""
    env = {**os.environ, "PYTHONPATH": str(release)}
    seed = subprocess.run([sys.executable, "-c", "from graders import tokenizer as t; print(t.held_out_seed(), "
                           "t.PUBLIC_HELD_OUT_SEED)"], cwd=release, env=env, capture_output=True, text=True).stdout.split()
    assert seed[0] == seed[1]
    out = subprocess.run([sys.executable, "-m", "toolkit.cli", "run", str(ROOT / "tests/plugins/tok_incremental.py"),
                          "--fast", "-c", "tokenizer"], cwd=release, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "total: 9 / 9 (public checks only)" in out.stdout
    assert "held-out data: public" in " ".join(out.stdout.split())
