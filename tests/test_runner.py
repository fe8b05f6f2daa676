"""``toolkit run``'s two lanes: the components checked in two processes side by side.

The unit checks alone (``behavioural=False``) keep these tests to seconds. That the lanes' training
passes every behavioural check is ``test_cli.py::test_run_solutions_end_to_end`` (``--processes 2``);
that it gives exactly one process's figures, check by check, is ``benchmarks/lanes.py``.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.components import COMPONENTS
from toolkit.config import PipelineConfig
from toolkit.runner import SECOND_LANE, Job, LaneEnded, check_components, in_lanes

ROOT = Path(__file__).resolve().parents[1]
LANES = [[c for c in COMPONENTS if c not in SECOND_LANE], list(SECOND_LANE)]


def unit_checks(spec: str) -> Job:
    """Every unit check of ``spec``, hidden ones included."""
    return Job(spec, PipelineConfig(), None, None, include_hidden=True, behavioural=False)


def test_lanes_give_one_process_results_and_meet_before_the_hidden_checks():
    logged: list[str] = []
    lanes = in_lanes(LANES, unit_checks(str(ROOT / "solutions")), logged.append)
    alone = check_components(list(COMPONENTS), unit_checks(str(ROOT / "solutions")), log=lambda m: None)
    assert [(r.name, r.status, r.score) for r in lanes] == [(r.name, r.status, r.score) for r in alone]
    hidden = {r.name for r in alone if r.hidden}
    assert hidden and len(hidden) < len(alone)
    started = [m.strip().removesuffix(" ...") for m in logged if m.endswith(" ...")]  # "  name ..." per check
    assert sorted(started) == sorted(r.name for r in alone)
    first_hidden = min(i for i, name in enumerate(started) if name in hidden)
    assert not set(started[first_hidden:]) - hidden  # no public check of either lane after a hidden one


def attention_and_sampler(tmp_path: Path, in_sampler: str) -> Path:
    """A submission of the solution's attention and sampler, with ``in_sampler`` run first in the sampler hook."""
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "attention.py").write_text((ROOT / "solutions" / "attention.py").read_text())
    (folder / "sampler.py").write_text((ROOT / "solutions" / "sampler.py").read_text().replace(
        "    if temperature == 0:", f"    {in_sampler}\n    if temperature == 0:"))
    return folder


def test_what_a_lane_prints_goes_to_stderr(tmp_path, capfd):
    chatty = attention_and_sampler(tmp_path, "print('hello from a hook')")
    in_lanes([["attention"], ["sampler"]], unit_checks(str(chatty)), lambda m: None)
    out, err = capfd.readouterr()
    assert "hello from a hook" in err and "hello from a hook" not in out  # stdout may be carrying --json


def test_a_lane_that_dies_is_reported_and_the_other_does_not_hang(tmp_path):
    both = attention_and_sampler(tmp_path, "import os; os._exit(7)")
    with pytest.raises(LaneEnded, match=r"checking sampler ended without its results \(exit code 7\): the "
                                         r"submission's code ended it"):
        in_lanes([["attention"], ["sampler"]], unit_checks(str(both)), lambda m: None)
    # from the command line: one sentence naming the submission, exit 2 (the contract broken), no traceback
    out = subprocess.run([sys.executable, "-m", "toolkit", "run", str(both), "--processes", "2", "--public-only"],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TOOLKIT_CACHE": str(tmp_path)})
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"error: {both}: the process checking sampler ended without its results (exit code 7)" in out.stderr
    assert "Traceback" not in out.stderr


def test_lanes_by_default_only_where_each_thread_has_a_core(monkeypatch):
    from toolkit import runner

    config = PipelineConfig()  # 2 threads per process
    monkeypatch.setattr(runner, "cores", lambda: 4)
    assert runner.lanes_pay(config)
    monkeypatch.setattr(runner, "cores", lambda: 2)
    assert not runner.lanes_pay(config)  # one process already keeps both cores busy
    monkeypatch.undo()
    monkeypatch.delattr(runner.os, "sched_getaffinity")  # as on macOS
    assert runner.cores() == os.cpu_count()
