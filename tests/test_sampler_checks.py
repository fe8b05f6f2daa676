"""The sampler checks fail on classic wrong samplers, naming the mistake, and pass on correct ones.

Each check runs as ``toolkit.runner`` runs it (see ``run``). The plugins are ``tests/plugins/samp_*.py``:
two correct samplers written differently from ``solutions/sampler.py`` (the Gumbel-max trick without
torch.multinomial; plain Python per row), and one wrong sampler per classic mistake; each mistake fails
one check, whose reason names it (``VARIANTS`` makes the whole-concept ones again in code of their own). The draws are
seeded at grading time (``graders.contexts.run_seed``): a correct sampler fails a run with probability
at most 3.2e-5, and a wrong one is caught with room to spare; the exact test behind them is tested on
its own at the end (its p-values against brute force, and its false-failure rate against its bound).
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from graders import sampler as grader
from graders import statistics
from toolkit import cache
from graders.hidden.checks import unseen_cases
from tests import harness
from tests.harness import PLUGINS, ROOT, Table, assert_fails, assert_passes
from toolkit.checks import Context, Result, load_snapshot, run_check
from toolkit.config import PipelineConfig
from toolkit.plugins import Components, build_manager, load_submission

CHECKS = harness.all_checks("sampler")
PUBLIC = list(harness.unit_checks("sampler"))  # unit checks
HIDDEN = [name for name, c in CHECKS.items() if c.hidden and not c.behavioural]

CORRECT = {
    "solution": ROOT / "solutions" / "sampler.py",
    "gumbel": PLUGINS / "samp_gumbel.py",
    "rowwise": PLUGINS / "samp_rowwise.py",
}

NOT_LOGITS = "gave torch.multinomial negative numbers: it takes probabilities (a softmax), not logits"
CROSSING = "top_p dropped the token whose probability makes the sum reach p"
IGNORED = "top_p was ignored: every case with top_p was drawn from softmax(logits / temperature)"
WRONG = {  # wrong sampler -> {check it fails: what the reason says}; it passes every other public check
    # which tied row it gets wrong first depends on the generator, seeded at grading time
    "samp_tiny_temperature.py": {"sampler.greedy": "the lowest, as torch.argmax gives (greedy is the argmax, not "
                                                   "sampling at a tiny temperature)"},
    "samp_topk_by_index.py": {"sampler.top_k": "top_k 3, logits [0, -1, 0.5, -0.5, 2, 1, 2.5, 3]: top_k kept the "
                                               "first k ids, not the k largest logits"},
    "samp_topk_exactly_k.py": {"sampler.top_k": "kept exactly k tokens where several tie with the k-th largest"},
    "samp_topk_unclamped.py": {"sampler.top_k": "with top_k 10 among 8 tokens your sampler raised RuntimeError: "
                                                "selected index k out of range: a top_k of V or more keeps every"},
    # the reason opens with the case's settings and row, never a title that the hint contradicts
    "samp_topp_drops_crossing.py": {"sampler.top_p": f"top_p 0.5, probabilities [0.1, 0.2, 0.4, 0.2, 0.1]: {CROSSING}"},
    "samp_topp_cumsum_below_p.py": {"sampler.top_p": f"top_p 0.5, probabilities [0.1, 0.2, 0.4, 0.2, 0.1]: {CROSSING}"},
    "samp_topp_ascending.py": {"sampler.top_p": "top_p kept the least likely tokens"},
    "samp_topp_flipped_ties.py": {"sampler.top_p": "at equal probability top_p must rank the lower id first"},
    "samp_topp_before_temperature.py": {"sampler.top_p": "temperature 0.5, top_p 0.7, probabilities [0.6, 0.3, 0.1]: "
                                                         "top_p was applied before dividing the logits by the "
                                                         "temperature"},
    "samp_no_topp.py": {"sampler.top_p": IGNORED},  # a book's sampler: temperature and top-k, no top-p
    "samp_temperature_after_softmax.py": {"sampler.temperature": "the draws follow softmax(logits), not "
                                                                 "softmax(logits / temperature)"},
    "samp_multinomial_logits.py": {"sampler.temperature": "the draws are proportional to the logits",
                                   # with a -inf or a negative logit, torch.multinomial refuses them
                                   **{name: NOT_LOGITS for name in ("sampler.top_k", "sampler.top_p",
                                                                    "sampler.extreme_logits",
                                                                    "sampler.rows_independent")},
                                   # and on a model's logits (negative ones) in the pipeline's shapes it raises
                                   "sampler.written_out": "sampling calls in the pipeline's shapes returned no "
                                                          "valid ids"},
    "samp_naive_softmax.py": {"sampler.extreme_logits": "exp of a logit of 1e4 is inf",
                              "sampler.rows_independent": "subtract each row's own maximum"},  # exp(302) is inf too
    "samp_clamp.py": {"sampler.extreme_logits": "token 3, whose logit is -inf, was drawn"},
    "samp_batch_max.py": {"sampler.rows_independent": "lost all its probability: subtract each row's own maximum"},
    "samp_global_rng.py": {"sampler.uses_generator": "drew from torch's global random generator"},
    "samp_touches_global_rng.py": {"sampler.uses_generator": "drew from torch's global random generator (or re-seeded"},
    # its draws repeat from call to call: only the check of the generator says so
    "samp_fresh_generator.py": {"sampler.uses_generator": "generators seeded 0 and 1 gave the same 64 tokens: the "
                                                          "sampler ignores the generator passed in (a fresh "
                                                          "torch.Generator() starts from the same seed"},
    "samp_calls_toolkit.py": {"sampler.written_out": "the code uses toolkit.sample, sample_next",
                              "sampler.top_p": IGNORED},  # the toolkit's has no top-p
    "samp_calls_toolkit_hidden.py": {"sampler.written_out": "toolkit_sample calls toolkit.sample (sample_next)",
                                     "sampler.top_p": IGNORED},
    # a stub earns nothing: every check shows the stub's own sentence (written_out calls it once more to get it)
    "samp_stub.py": {name: "toolkit_sample is not implemented yet: it raised NotImplementedError"
                     for name in ("sampler.written_out", "sampler.greedy", "sampler.top_k", "sampler.top_p",
                                  "sampler.temperature", "sampler.extreme_logits", "sampler.rows_independent",
                                  "sampler.uses_generator")},
}


DIAL_WRONG = {  # wrong sampler -> {behavioural check it fails: what the reason says}
    "samp_temperature_after_softmax.py": {"sampler.temperature_dial": "with the toolkit's sampler"},
    "samp_calls_toolkit.py": {"sampler.temperature_dial": "top-p should cut the unlikely tokens"},  # no top-p at all
    "samp_topp_ascending.py": {"sampler.nucleus_dial": "with the solution (z = "},
    # at T 2, top-p 0.8 a row whose top token has more than 0.8 is left empty: the setting is named, not torch's error
    "samp_topp_cumsum_below_p.py": {"sampler.temperature_dial": "with top_p 0.8 your sampler gave torch.multinomial a "
                                                                "row of NaN: top_p left a row without any token"},
}

SAMPLER = Table("sampler", CORRECT, WRONG, behaviour=DIAL_WRONG, sources=True)
TABLES = [SAMPLER]


def run(check_name: str, path: Path | None) -> Result:
    """What the runner does for one check of the plugin at ``path`` (None: the toolkit's baselines)."""
    return harness.run([check_name], path, sources=True)[check_name]


# -- the tables above are complete (and tests/test_tables.py: every check is caught, every plugin used) --
def test_the_table_names_the_checks():
    assert set(PUBLIC) == {f"sampler.{n}" for n in ("greedy", "top_k", "top_p", "temperature", "extreme_logits",
                                                    "rows_independent", "uses_generator", "written_out")}


# -- correct samplers pass, wrong ones fail with their own reason -------------------------------
@pytest.mark.parametrize("table, check_name, path", harness.correct_cases(TABLES))
def test_check_passes_on_correct_sampler(table, check_name, path):
    assert_passes(harness.unit_results(table, path)[check_name])


@pytest.mark.parametrize("table, check_name, path, says", harness.wrong_cases(TABLES))
def test_check_fails_on_wrong_sampler(table, check_name, path, says):
    assert_fails(harness.unit_results(table, path)[check_name], says)


@pytest.mark.parametrize("table, check_name, path", harness.other_cases(TABLES))
def test_wrong_sampler_passes_the_checks_of_other_mistakes(table, check_name, path):
    assert_passes(harness.unit_results(table, path)[check_name])


# -- the whole-concept mistakes are named by what they do, not by one plugin's code -----------------
HEADER = "import math\n\nimport torch\n\nimport toolkit\n\n\n@toolkit.hookimpl\n"
VARIANTS = {  # a mistake written otherwise than its plugin -> (its source, the check it fails, what the reason says)
    "top_p ignored, in float64 with a sorted threshold": ("""
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(-1)
    x = logits.double() / temperature
    if top_k is not None and top_k < x.shape[-1]:
        x = torch.where(x >= x.sort(-1, descending=True).values[:, top_k - 1 : top_k], x, -math.inf)
    weights = (x - x.amax(-1, keepdim=True)).exp()  # top_p: never read
    return torch.multinomial(weights, 1, generator=generator).view(-1)
""", "sampler.top_p", IGNORED),
    "top_p before the temperature, on the raw logits, Gumbel-max": ("""
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(-1)
    keep = torch.ones_like(logits, dtype=torch.bool)
    if top_k is not None:
        keep &= logits >= logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
    if top_p is not None:
        probs = logits.masked_fill(~keep, -math.inf).softmax(-1)  # should be of logits / temperature
        order = probs.argsort(dim=-1, descending=True, stable=True)
        ranked = probs.gather(-1, order)
        keep &= torch.zeros_like(keep).scatter(-1, order, ranked.cumsum(-1) - ranked < top_p)
    gumbel = -torch.log(-torch.log(torch.rand(logits.shape, generator=generator)))
    return torch.where(keep, logits / temperature + gumbel, -math.inf).argmax(-1)
""", "sampler.top_p", "top_p was applied before dividing the logits by the temperature"),
    "top_p before top_k": ("""
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(-1)
    x = logits / temperature
    if top_p is not None:  # should come after top_k
        ranked, order = x.softmax(-1).sort(dim=-1, descending=True, stable=True)
        drop = ranked.cumsum(-1) - ranked >= top_p
        x = x.masked_fill(drop.scatter(-1, order, drop), -math.inf)
    if top_k is not None:
        x = x.masked_fill(x < x.topk(min(top_k, x.shape[-1]), dim=-1).values[:, -1:], -math.inf)
    return torch.multinomial(x.softmax(-1), 1, generator=generator)[:, 0]
""", "sampler.top_p", "top_p ranks the probabilities renormalised over the tokens top_k kept"),
    "the crossing token dropped, an empty row of -inf": ("""
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(-1)
    x = logits / temperature
    if top_k is not None:
        x = x.masked_fill(x < x.topk(min(top_k, x.shape[-1]), dim=-1).values[:, -1:], -math.inf)
    if top_p is not None:
        ranked, order = x.softmax(-1).sort(-1, descending=True)
        drop = ranked.cumsum(-1) > top_p  # should be the mass ranked above the token, >= top_p
        x = x.masked_fill(drop.scatter(-1, order, drop), -math.inf)
    return torch.multinomial(x.softmax(-1), 1, generator=generator)[:, 0]
""", "sampler.top_p", CROSSING),
    "top_k by position, by slicing": ("""
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(-1)
    x = logits / temperature
    if top_k is not None:
        x = torch.cat([x[:, :top_k], torch.full_like(x[:, top_k:], -math.inf)], dim=-1)  # the first k ids
    if top_p is not None:
        ranked, order = x.softmax(-1).sort(dim=-1, descending=True, stable=True)
        drop = ranked.cumsum(-1) - ranked >= top_p
        x = x.masked_fill(drop.scatter(-1, order, drop), -math.inf)
    return torch.multinomial(x.softmax(-1), 1, generator=generator)[:, 0]
""", "sampler.top_k", "top_k kept the first k ids, not the k largest logits"),
    "the global generator, Gumbel noise from torch.rand": ("""
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(-1)
    x = logits.double() / temperature
    if top_k is not None:
        x = x.masked_fill(x < x.topk(min(top_k, x.shape[-1]), dim=-1).values[:, -1:], -math.inf)
    if top_p is not None:
        ranked, order = x.softmax(-1).sort(dim=-1, descending=True, stable=True)
        drop = ranked.cumsum(-1) - ranked >= top_p
        x = x.masked_fill(drop.scatter(-1, order, drop), -math.inf)
    return (x - torch.log(-torch.log(torch.rand(x.shape, dtype=x.dtype)))).argmax(-1)  # no generator
""", "sampler.uses_generator", "drew from torch's global random generator"),
    "a generator of its own, seeded each call": ("""
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(-1)
    x = logits / temperature
    if top_k is not None:
        x = x.masked_fill(x < x.topk(min(top_k, x.shape[-1]), dim=-1).values[:, -1:], -math.inf)
    if top_p is not None:
        ranked, order = x.softmax(-1).sort(dim=-1, descending=True, stable=True)
        drop = ranked.cumsum(-1) - ranked >= top_p
        x = x.masked_fill(drop.scatter(-1, order, drop), -math.inf)
    own = torch.Generator().manual_seed(1234)  # "reproducible": should be the generator passed in
    return torch.multinomial(x.softmax(-1), 1, generator=own)[:, 0]
""", "sampler.uses_generator", "the sampler ignores the generator passed in"),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_whole_concept_mistake_written_otherwise_is_named_by_its_check_alone(tmp_path, variant):
    """Each variant makes one mistake of a plugin above in code of its own: its check names the
    mistake, and every other public check passes (the diagnosis fits the mistake, not one plugin)."""
    source, failing, says = VARIANTS[variant]
    path = tmp_path / f"variant_{list(VARIANTS).index(variant)}.py"
    path.write_text(HEADER + source.lstrip())
    for name in PUBLIC:
        result = run(name, path)
        if name == failing:
            assert_fails(result, says)
        else:
            assert result.status == "passed", (name, result.reason)


def components_of(path: Path) -> Components:
    return Components(build_manager(load_submission(str(path))), only="sampler")


def test_a_call_that_raises_is_explained_by_the_setting_without_which_it_works():
    """The notebook's classic top-p keeps nothing when the top token alone has more than p: torch.multinomial
    refuses the row of NaN. The reason names top_p, which the same call without it does not need, and says
    what top_p must keep; torch's words alone would not say which setting made them."""
    case = next(c for c in grader.CASES if c.name == "top_p keeps the top token")
    probs = load_snapshot("sampler")["probs"][case.name]
    with pytest.raises(grader.CheckFailed) as failed:
        grader.check_draws(components_of(PLUGINS / "samp_topp_cumsum_below_p.py"), case, probs, seed=0)
    assert str(failed.value) == f"with top_p 0.5 your sampler gave torch.multinomial a row of NaN: {grader.EMPTY_NUCLEUS}"
    # where the spy cannot see torch.multinomial's input (the submission runs in a child), torch's message says
    error = grader.PluginError("x.py: hook toolkit_sample raised RuntimeError: invalid multinomial distribution "
                               "(sum of probabilities <= 0)")
    assert grader.handed([], str(error)) == "a row of zeros"


def test_a_sampler_without_top_p_yet_fails_top_p_alone_and_says_so(tmp_path):
    """A sampler written but for top-p, which it leaves for later (NotImplementedError): top_p fails naming
    the setting, every other public check passes; a stub (samp_stub.py) earns nothing."""
    path = tmp_path / "top_p_later.py"
    path.write_text(HEADER + """
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(-1)
    if top_p is not None:
        raise NotImplementedError("top_p: later")
    x = logits / temperature
    if top_k is not None:
        x = x.masked_fill(x < x.topk(min(top_k, x.shape[-1]), dim=-1).values[:, -1:], -math.inf)
    return torch.multinomial(x.softmax(-1), 1, generator=generator)[:, 0]
""".lstrip())
    for name in PUBLIC:
        result = run(name, path)
        if name == "sampler.top_p":
            assert_fails(result, "with top_p 0.5 your sampler raised NotImplementedError: top_p: later: it works with "
                                 "top_p None")
        else:
            assert result.status == "passed", (name, result.reason)


class OwnProcess:
    """Stands for ``toolkit grade``'s child, as ``Context.remote`` and as the components: runs the hook
    and the ``@child_side`` functions with a global random generator of their own, as another process
    has (what the sampler does to it never reaches the grader's)."""

    def __init__(self, components: Components):
        self._components = components

    def sample(self, *args):  # the hook, as ``toolkit.grading.remote.RemoteComponents`` calls it
        with torch.random.fork_rng(devices=[]):
            return self._components.sample(*args)

    def run(self, component, config, fn, args):  # ``Context.in_child``
        with torch.random.fork_rng(devices=[]):
            return fn(SimpleNamespace(components=self._components), *args)


@pytest.mark.parametrize("plugin, says", [("samp_rowwise.py", None), ("samp_touches_global_rng.py", "or re-seeded it"),
                                          ("samp_global_rng.py", "drew from torch's global random generator")])
def test_uses_generator_watches_the_global_generator_where_the_sampler_runs(plugin, says):
    """Under ``toolkit grade`` the sampler runs in the child: the grader's global generator never moves,
    so "global RNG untouched" is measured there (``sample_watching_global_rng``)."""
    child = OwnProcess(Components(build_manager(load_submission(str(PLUGINS / plugin))), only="sampler"))
    result = run_check(CHECKS["sampler.uses_generator"], Context(child, "sampler", PipelineConfig(), remote=child,
                                                                 log=lambda msg: None))
    if says is None:
        assert result.status == "passed", result.reason
    else:
        assert_fails(result, says)


def test_the_baseline_is_the_toolkits_sampler_without_top_p():
    """The baseline calls toolkit.sample.sample_next, today's sampler: temperature and top-k hold; it
    ignores top_p (the assignment's to write), and calling the toolkit's sampler is not writing one."""
    for name in PUBLIC:
        result = run(name, None)
        if name == "sampler.written_out":
            assert_fails(result, "calls toolkit.sample (sample_next)")
        elif name == "sampler.top_p":
            assert_fails(result, IGNORED)
        else:
            assert result.status == "passed", (name, result.reason)


# -- behaviour: the temperature dial (DIAL_WRONG, above) ---------------------------------------------


def test_the_dial_checks_are_the_behavioural_ones():
    assert sorted(n for n, c in CHECKS.items() if c.behavioural) == ["sampler.nucleus_dial", "sampler.temperature_dial"]


@pytest.mark.slow
@pytest.mark.parametrize("check_name", ["sampler.temperature_dial", "sampler.nucleus_dial"])
def test_dial_passes_on_a_sampler_written_differently(check_name):
    """The Gumbel-max sampler draws other tokens than the solution's: its rates differ by chance only."""
    result = run(check_name, CORRECT["gumbel"])
    assert result.status == "passed", result.reason


@pytest.mark.slow
@pytest.mark.parametrize("check_name, path, says", harness.behaviour_cases(TABLES))
def test_dial_fails_on_wrong_sampler(check_name, path, says):
    assert_fails(run(check_name, path), says)


def test_the_reference_dial_is_drawn_once_per_machine(tmp_path, monkeypatch):
    """The toolkit's draws on the same models are kept in the cache folder: a later run reads them
    back, equal to the last float, and other weights or another seed draw again."""

    draws = []

    def fake_dial(pipeline, settings, sampler):
        draws.append(pipeline.config.seed)
        return {"chat": {s.name: {"Answer": {"p": 1 / 3, "n": 140}} for s in settings}}

    monkeypatch.setattr(grader, "_dial", fake_dial)
    monkeypatch.setattr(cache, "_MEMO", {})  # this process's memory (toolkit.cache.memo)
    torch.manual_seed(0)
    base, chat = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    p = SimpleNamespace(base_model=base, chat_model=chat, cache_dir=tmp_path, config=PipelineConfig())
    first = grader.reference_dial(p, grader.DIAL, "toolkit", grader.sample_next)
    assert len(list(tmp_path.glob("dial-*.json"))) == 1
    monkeypatch.setattr(cache, "_MEMO", {})  # the next process
    assert grader.reference_dial(p, grader.DIAL, "toolkit", grader.sample_next) == first and draws == [0]
    with torch.no_grad():
        chat.weight[0, 0] += 1e-6
    grader.reference_dial(p, grader.DIAL, "toolkit", grader.sample_next)
    other_seed = SimpleNamespace(**{**vars(p), "config": PipelineConfig(seed=1)})
    grader.reference_dial(other_seed, grader.DIAL, "toolkit", grader.sample_next)
    assert draws == [0, 0, 1] and len(list(tmp_path.glob("dial-*.json"))) == 3


def test_z_score_and_the_verdict_on_rates():
    assert statistics.z_score({"p": 0.5, "n": 100}, {"p": 0.5, "n": 100}) == 0
    assert statistics.z_score({"p": 0.0, "n": 50}, {"p": 0.0, "n": 80}) == 0  # no variance: no evidence
    z = statistics.z_score({"p": 0.6, "n": 100}, {"p": 0.4, "n": 100})  # pooled 0.5: se = sqrt(0.25 * 0.02)
    assert z == pytest.approx(0.2 / math.sqrt(0.005))
    dist = lambda g: {label: {"p": p, "n": 140} for label, p in zip(("Continuation", "Answer", "Clarification",
                                                                      "Gibberish"), g)}
    same = {"chat": {"T 2": dist((0.1, 0.1, 0.1, 0.7))}}
    assert grader.differs(same, same, "x") is None
    off = {"chat": {"T 2": dist((0.55, 0.1, 0.1, 0.25))}}
    assert "at T 2, 0.55 of the chat model's replies were Continuation with this sampler, 0.10 with x" in \
        grader.differs(off, same, "x")


# -- the hidden check --------------------------------------------------------------------------
def test_hidden_check_passes_on_correct_samplers_and_fails_on_wrong_ones():
    assert HIDDEN == ["sampler.unseen_logits"]
    for path in (CORRECT["solution"], CORRECT["gumbel"]):  # the per-row Python sampler takes 20 s here
        result = run("sampler.unseen_logits", path)
        assert result.status == "passed", result.reason
    assert_fails(run("sampler.unseen_logits", PLUGINS / "samp_tiny_temperature.py"),
                 "temperature 0 gave ids [20, 15], the solution [14, 15]")
    assert_fails(run("sampler.unseen_logits", PLUGINS / "samp_topp_before_temperature.py"),
                 "temperature 0.7, top_k 24, top_p 0.412, random logits (row 0, V 29): token")
    # a row no public case names mistakes for: the dropped crossing token is recognised by what it is
    assert_fails(run("sampler.unseen_logits", PLUGINS / "samp_topp_drops_crossing.py"),
                 f"temperature 0.7, top_k 24, top_p 0.412, random logits (row 0, V 29): {CROSSING}")


# -- the cases say what the contract says -------------------------------------------------------
def kept(case: grader.Case) -> list[list[int]]:
    """The tokens the snapshot's probabilities keep, per row of ``case``."""
    probs = load_snapshot("sampler")["probs"][case.name]
    return [[i for i, p in enumerate(row) if p > 0] for row in probs]


def test_the_snapshot_keeps_the_tokens_the_contract_keeps():
    case = {c.name: c for c in grader.CASES}
    assert kept(case["top_k by value, ties kept"]) == [[4, 6, 7], [1, 2, 4, 6]]  # ties with the 3rd largest kept
    assert kept(case["top_k larger than V"]) == [[0, 1, 2, 3, 4, 5, 7]]
    assert kept(case["top_k 1"]) == [[3]]
    assert kept(case["top_p keeps the crossing token"]) == [[1, 3]]
    assert kept(case["top_p ties"]) == [[1, 2]]  # the lower tied id
    assert kept(case["top_p keeps the top token"]) == [[1]]  # alone more than p
    assert kept(case["top_p after top_k"]) == [[0, 2]]
    assert kept(case["top_p after the temperature"]) == [[0]]
    assert kept(case["logits of -1e4 next to -inf"]) == [[0, 1, 2]]
    snapshot = load_snapshot("sampler")
    assert snapshot["draws"] == grader.DRAWS and snapshot["alpha"] == statistics.ALPHA
    assert set(snapshot["probs"]) == {c.name for c in grader.CASES}


def test_no_mistake_a_case_names_is_what_a_correct_sampler_keeps():
    for case in grader.CASES:
        for row, support in zip(case.rows, kept(case)):
            assert tuple(support) not in row.mistakes, (case.name, row.label)


def ranked_mass(case: grader.Case, logits: list[float]) -> tuple[list[float], list[float]]:
    """(scaled logits after top_k, the mass ranked above each token), in float64, from the contract."""
    x = [v / case.temperature for v in logits]
    if case.top_k is not None and case.top_k < len(x):
        kth = sorted(x, reverse=True)[case.top_k - 1]
        x = [v if v >= kth else -math.inf for v in x]
    w = [math.exp(v - max(x)) for v in x]
    p = [v / sum(w) for v in w]
    before, mass = [0.0] * len(p), 0.0
    for i in sorted(range(len(p)), key=lambda i: (-p[i], i)):
        before[i], mass = mass, mass + p[i]
    return x, before


@pytest.mark.parametrize("case", grader.CASES + unseen_cases(), ids=lambda c: c.name)
def test_no_case_sits_on_a_rounding_boundary(case):
    """A sampler computing in float32 or float64, in any order, keeps the same tokens: no scaled logit
    is within 1e-4 of the k-th largest unless equal to it, no ranked mass within 1e-3 of top_p."""
    for row in case.rows:
        x, before = ranked_mass(case, row.logits)
        if case.top_k is not None and case.top_k < len(x):
            kth = sorted((v / case.temperature for v in row.logits), reverse=True)[case.top_k - 1]
            assert all(v == kth or abs(v - kth) > 1e-4 for v in (v / case.temperature for v in row.logits))
        if case.top_p is not None:
            assert all(abs(m - case.top_p) > 1e-3 for m, v in zip(before, x) if v > -math.inf)


def test_the_module_docstring_counts_the_rows():
    assert sum(len(case.rows) for case in grader.CASES) == 16
    assert "16 rows" in grader.__doc__


# -- the exact test ----------------------------------------------------------------------------
def pmf(k: int, n: int, p: float) -> float:
    """Binomial(n, p) at k, in exact integer arithmetic (p has at most 3 decimals), then rounded."""
    num, den = round(p * 1000), 1000
    return float(Fraction(math.comb(n, k) * num**k * (den - num) ** (n - k), den**n))


@pytest.mark.parametrize("n, p", [(1, 0.5), (30, 0.1), (60, 0.37), (200, 0.02)])
def test_binomial_p_value_is_twice_the_smaller_tail(n, p):
    for k in range(n + 1):
        tail = sum(pmf(i, n, p) for i in range(k, n + 1)) if k >= n * p else sum(pmf(i, n, p) for i in range(k + 1))
        assert statistics.binomial_p_value(k, n, p) == pytest.approx(min(1.0, 2 * tail), rel=1e-9, abs=1e-300)


def log_pmf(k: int, n: int, p: float) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log(1 - p)


@pytest.mark.parametrize("n, p", [(40, 0.3), (grader.DRAWS, 0.09), (grader.DRAWS, 0.5)])
def test_a_correct_count_fails_no_more_often_than_alpha(n, p):
    """P(p-value <= a) <= a, summed over every possible count: the bound the checks rely on."""
    p_values = [statistics.binomial_p_value(k, n, p) for k in range(n + 1)]
    for a in (0.05, 1e-3, 1e-6):
        rejected = sum(math.exp(log_pmf(k, n, p)) for k in range(n + 1) if p_values[k] <= a)
        assert a / 10 < rejected <= a  # a bound, and not a loose one


def test_the_test_accepts_fair_counts_and_rejects_a_shift_of_five_points():
    probs = [0.5, 0.3, 0.2]
    n = grader.DRAWS
    assert statistics.fits([2000, 1200, 800], probs)
    assert statistics.fits([2060, 1160, 780], probs)  # 1.5 to 2 standard deviations off
    assert not statistics.fits([1800, 1400, 800], probs)  # 0.05 moved: about 7 standard deviations
    assert not statistics.fits([1999, 1200, 800, 1], probs + [0.0])  # outside the support
    assert grader.worst_token([n, 0, 0], [1.0, 0.0, 0.0]) is None  # nothing to test: one token holds it all


# -- the pipeline's contexts (graders/contexts.py) ------------------------------------------------
HOSTILE = ROOT / "tests" / "hostile" / "components"


def test_a_sampler_greedy_on_small_vocabularies_is_seen_calling_the_toolkits_in_the_pipelines():
    """forge_context_sampler is greedy when V <= 100 (every case of the checks' own) and calls the toolkit's
    sampler, under a name built at run time, on the pipeline's vocabularies: written_out now watches a dial's
    calls in the pipeline's shapes and sees it."""
    assert_fails(run("sampler.written_out", HOSTILE / "forge_context_sampler.py"),
                 "toolkit_sample calls toolkit.sample (sample_next)")
    assert run("sampler.greedy", HOSTILE / "forge_context_sampler.py").status == "passed"  # its honest 2 points


LARGE_ONLY = """
import toolkit
from toolkit.sample import sample_next as _draw_{tag}


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if logits.shape[-1] <= 100:
        return _draw_{tag}(logits, temperature, top_k, top_p, generator)
    return {large}
"""


@pytest.mark.parametrize("tag, large, check_name, says", [
    ("a", "logits[:, :1].argmax(-1)", "sampler.greedy", "among"),  # argmax of the first column only
    ("b", "torch.zeros(len(logits), dtype=torch.long)", "sampler.top_k", "among"),  # always id 0
    ("c", "_draw_c(logits, temperature, top_k, top_p, None)", "sampler.uses_generator", "among"),  # global generator
])
def test_a_sampler_right_only_on_small_vocabularies_fails_in_the_pipelines(tmp_path, tag, large, check_name, says):
    """Right (the toolkit's own) on the checks' small vocabularies, wrong on the pipeline's: the check that
    draws its cases among the pipeline's vocabulary sizes fails, and says in which context."""
    path = tmp_path / f"large_only_{tag}.py"
    path.write_text("import torch\n" + LARGE_ONLY.format(tag=tag, large=large))
    assert_fails(run(check_name, path), says)


def test_written_out_counts_only_the_calls_that_returned_valid_ids(tmp_path):
    """A sampler that raises (or returns garbage) on the pipeline's vocabularies gives no evidence of what it
    calls there: written_out cannot pass on the calls it did not see complete."""
    path = tmp_path / "raises_on_large.py"
    path.write_text("import torch\nimport toolkit\n\n\n@toolkit.hookimpl\n"
                    "def toolkit_sample(logits, temperature, top_k, top_p, generator):\n"
                    "    if logits.shape[-1] > 100:\n        raise RuntimeError('not here')\n"
                    "    return logits.argmax(-1)\n")
    assert_fails(run("sampler.written_out", path), "calls in the pipeline's shapes returned no valid ids")
