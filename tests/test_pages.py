"""The pages a student and an instructor open, in a real browser: headless Chromium driven by Playwright.

Four kinds of page, made by the command line as a user makes them:

- the report of ``make demo``: ``toolkit run solutions/ --fast --report DIR``, every component
  (and the same page with a headline chart drawn in, as the run without ``--fast`` has it);
- the student report: ``toolkit run PLUGIN --fast --report DIR`` -> ``DIR/index.html``, for a
  correct and a wrong attention plugin;
- the feedback page: ``toolkit grade CLASS --out OUT --fast -c attention`` ->
  ``OUT/feedback/<student>/index.html``, for alice (correct), bob (no causal mask) and carol
  (raises at import);
- the class summary of that grading: ``OUT/summary.html``.

Each page is opened once from its file, with every request routed: only the page's own
``file://`` URL and ``data:`` URLs are allowed, anything else is aborted and recorded. On each
page: no console error, no page error, no other request, the number of images it should have,
each decoded and shown at a non-zero size, no sideways scrolling in a 400 px wide window, no
Markdown sign in a check's description, and the text its reader needs is visible (the score line
on the first screen, the check names, the reason of every failing check, why a submission was
not graded). The report opens with the headline chart and one line per component, the check
table below; the summary opens with the students and the score distribution, and shows each
check's pass rate as a bar.
Only the wording in the constants below is assumed; the scores, check names and reasons are read
from the files the same commands write (``results.json``, ``grades.csv``, Gradescope's
``results.json``).

The browser is Debian's Chromium (``apt-get install chromium``, or ``make browser``), never one
that Playwright downloads; ``TOOLKIT_CHROMIUM`` names another binary. Without Playwright or
Chromium the whole file is skipped, for one stated reason.

Screenshots for the README: ``TOOLKIT_SCREENSHOTS=1 pytest -n 0 tests/test_pages.py`` makes the
pages without ``--fast`` (with the plots a student gets: minutes, not seconds, more on a cold model
cache), runs the same checks on them and writes a full-page PNG of each to ``docs/screenshots/``
(``report-demo.png``: the report of ``make demo``; ``summary.png``; ``feedback-bob.png``, a failing
student's page; and the others of ``PAGES``).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from toolkit.checks import collect
from toolkit.components import COMPONENTS

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "tests" / "plugins"
SCREENSHOTS = ROOT / "docs" / "screenshots" if os.environ.get("TOOLKIT_SCREENSHOTS") else None
FAST = [] if SCREENSHOTS else ["--fast"]

CHROMIUM = Path(os.environ.get("TOOLKIT_CHROMIUM", "/usr/bin/chromium"))
# The machine's closed network refuses Chromium's background connections: turn them off.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# The only wording of the pages these tests rely on.
SCORE_LINE = "{score} / {max_score} points"
WRONG_PLUGIN, FAILING_CHECK, FAILING_HINT = "attn_no_mask.py", "attention.causal", "mask the scores of future positions"
LOAD_ERROR = "RuntimeError: work in progress"  # carol's own exception: her page must say it
NARROW = 400  # px: a phone's window, where no page may scroll sideways
MARKDOWN_DESCRIPTION = "sampler.uses_generator", "generator"  # a check whose docstring has `generator`
HEADLINE_PLOT = "sft_headline"  # the chart the report opens with


def _no_browser() -> str | None:
    if sync_playwright is None:
        return "no browser: Playwright is not installed (pip install -c constraints.txt -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no browser: {CHROMIUM} is missing (make browser, or apt-get install chromium; TOOLKIT_CHROMIUM names another)"
    return None


NO_BROWSER = _no_browser()
if NO_BROWSER:
    pytest.skip(NO_BROWSER, allow_module_level=True)


# -- the pages, made by the command line ---------------------------------------------------
def _toolkit(log: Path, *args) -> subprocess.Popen:
    """``python -m toolkit.cli ARGS`` in the background, its stdout and stderr into ``log``."""
    with log.open("w") as f:
        return subprocess.Popen([sys.executable, "-m", "toolkit.cli", *map(str, args)], cwd=ROOT,
                                stdout=f, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, log: Path, returncodes: tuple[int, ...]) -> None:
    proc.wait(timeout=3600)
    assert proc.returncode in returncodes, f"{' '.join(proc.args)}\n{log.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """The three reports and the graded class, made at the same time: the folder that holds them;
    and the demo's report again with a headline chart drawn in (``headline``)."""
    root = tmp_path_factory.mktemp("pages")
    klass = root / "class"
    klass.mkdir()
    (klass / "alice.py").write_text((PLUGINS / "attn_einsum.py").read_text())
    (klass / "bob.py").write_text((PLUGINS / WRONG_PLUGIN).read_text())
    (klass / "carol.py").write_text("import toolkit\n\nraise RuntimeError('work in progress')\n")
    runs = [(_toolkit(root / "demo.log", "run", "solutions", *FAST, "--report", root / "demo"),
             root / "demo.log", (0, 1)),  # 1: tokenizer.speed, timed, can fail on a busy machine
            (_toolkit(root / "correct.log", "run", PLUGINS / "attn_einsum.py", *FAST, "--report", root / "correct"),
             root / "correct.log", (0,)),
            (_toolkit(root / "wrong.log", "run", PLUGINS / WRONG_PLUGIN, *FAST, "--report", root / "wrong"),
             root / "wrong.log", (1,)),
            (_toolkit(root / "grade.log", "grade", klass, "--out", root / "grades", *FAST, "-c", "attention",
                      "--workers", "2", "--timeout", "1200"), root / "grade.log", (0,))]
    try:
        for proc, log, returncode in runs:
            _finish(proc, log, returncode)
    finally:
        for proc, _, _ in runs:
            if proc.poll() is None:  # a run that failed or hung must not outlive the tests
                proc.kill()
    _with_a_headline(root / "demo", root / "headline")
    return root


def _with_a_headline(demo: Path, out: Path) -> None:
    """The demo's report with a headline chart of made-up rates, drawn by the toolkit's plotting
    function, as ``sft_mask.behaviour`` draws it without ``--fast``."""
    from toolkit.checks import CheckStatus, Result
    from toolkit.plots import plot_distributions
    from toolkit.report import Page, write_page

    run = json.loads((demo / "results.json").read_text())
    results = [Result(**{**r, "status": CheckStatus(r["status"])}) for r in run["results"]]
    share = lambda p: {"p": p, "lo": max(0.0, p - 0.1), "hi": min(1.0, p + 0.1), "n": 50}  # noqa: E731
    out.mkdir()
    plot_distributions({"base": {"Answer": share(0.1), "Continuation": share(0.9)},
                        "chat": {"Answer": share(0.9), "Continuation": share(0.0)}},
                       "Probability distribution: base vs chat", out / f"{HEADLINE_PLOT}.png")
    sft_mask = next(r for r in results if r.component == "sft_mask")
    sft_mask.metrics = {"_plots": [[f"{HEADLINE_PLOT}.png", "Classes of the base and chat models' replies"]]}
    write_page(Page(run["submission"], results, run["missing"], environment=run["environment"]), out)


@pytest.fixture(scope="module")
def grades(made) -> dict[str, dict]:
    """grades.csv: student -> row."""
    with (made / "grades" / "grades.csv").open() as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def _report(made: Path, name: str) -> dict:
    return json.loads((made / name / "results.json").read_text())


PAGES = {
    "report-demo": "demo/index.html",
    "report-headline": "headline/index.html",
    "report-correct": "correct/index.html",
    "report-wrong": "wrong/index.html",
    "feedback-alice": "grades/feedback/alice/index.html",
    "feedback-bob": "grades/feedback/bob/index.html",
    "feedback-carol": "grades/feedback/carol/index.html",
    "summary": "grades/summary.html",
}
PLOTS = 0 if FAST else 1  # --fast runs draw no plot; without it, each behavioural check draws its own
IMAGES = {  # how many images each page shows
    "report-demo": 11 * PLOTS,  # every plot of every component (the headline chart once)
    "report-headline": 1,
    "report-correct": 2 * PLOTS, "report-wrong": 2 * PLOTS,  # attention's heatmap and training curve
    "feedback-alice": 2 * PLOTS, "feedback-bob": 2 * PLOTS,
    "feedback-carol": 0,  # not graded
    "summary": 1,  # the score distribution
}


# -- the browser ---------------------------------------------------------------------------
@dataclass
class Visit:
    """One page opened in the browser, and everything it did while loading."""

    page: object  # playwright.sync_api.Page
    url: str
    requests: list[str] = field(default_factory=list)  # every URL asked for, once (data: URLs are not routed)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)

    @property
    def foreign_requests(self) -> list[str]:
        return [u for u in self.requests if u != self.url and not u.startswith("data:")]

    def shows(self, text: str) -> bool:
        """Is ``text`` on the page and visible (rendered, not hidden, a non-empty box)?"""
        return self.page.get_by_text(text).first.is_visible()

    def text(self) -> str:
        return self.page.locator("body").inner_text()


IMAGES_JS = """imgs => Promise.all(imgs.map(async img => {
  const decoded = await img.decode().then(() => true, () => false);
  const box = img.getBoundingClientRect();
  return {alt: img.alt, decoded, natural: [img.naturalWidth, img.naturalHeight],
          shown: [box.width, box.height], visible: img.checkVisibility()};
}))"""


def visit(context, url: str, width: int | None = None) -> Visit:
    """Open ``url`` in a new tab of ``context`` (``width`` px wide if given): only itself and data: URLs may load."""
    page = context.new_page()
    if width:
        page.set_viewport_size({"width": width, "height": 800})
    v = Visit(page, url)
    page.on("console", lambda msg: msg.type == "error" and v.console_errors.append(msg.text))
    page.on("pageerror", lambda err: v.page_errors.append(str(err)))

    def seen(u: str) -> None:
        if u not in v.requests:
            v.requests.append(u)

    def route(r):
        seen(r.request.url)
        if r.request.url == url or r.request.url.startswith("data:"):
            r.continue_()
        else:
            r.abort()

    page.route("**/*", route)
    page.on("request", lambda req: seen(req.url))
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    v.images = page.eval_on_selector_all("img", IMAGES_JS)
    return v


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A persistent context on a fresh, empty profile of the system's Chromium."""
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS)
        yield context
        context.close()


@pytest.fixture(scope="module")
def visits(browser, made) -> dict[str, Visit]:
    """Every page of PAGES opened once (and, with TOOLKIT_SCREENSHOTS, photographed)."""
    opened = {name: visit(browser, (made / path).as_uri()) for name, path in PAGES.items()}
    if SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for name, v in opened.items():
            if name != "report-headline":  # its chart is made up
                v.page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
    return opened


# -- every page ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", PAGES)
def test_page_loads_nothing_from_outside_and_logs_no_error(visits, name):
    v = visits[name]
    assert v.url in v.requests  # the route saw the page itself
    assert v.foreign_requests == []
    assert v.console_errors == [] and v.page_errors == []


@pytest.mark.parametrize("name", PAGES)
def test_every_image_decodes_and_is_shown(visits, name):
    assert len(visits[name].images) == IMAGES[name], [i["alt"] for i in visits[name].images]
    for image in visits[name].images:
        assert image["decoded"] and min(image["natural"]) > 0, image
        assert image["visible"] and min(image["shown"]) > 0, image


@pytest.mark.parametrize("name", PAGES)
def test_page_fits_a_narrow_window(browser, made, name):
    """No sideways scrolling at 400 px; the images shrink to the window."""
    v = visit(browser, (made / PAGES[name]).as_uri(), width=NARROW)
    try:
        assert v.page.evaluate("document.documentElement.scrollWidth") <= NARROW
        assert len(v.images) == IMAGES[name]
        assert all(0 < i["shown"][0] <= NARROW for i in v.images), v.images
    finally:
        v.page.close()


@pytest.mark.parametrize("name", PAGES)
def test_check_descriptions_show_no_markdown(visits, name):
    descriptions = visits[name].page.locator("td small").all_inner_texts()
    assert not any("`" in d or "**" in d for d in descriptions), descriptions


def test_a_description_s_code_is_shown_as_code(visits):
    check, code = MARKDOWN_DESCRIPTION
    row = visits["report-demo"].page.locator("tr", has=visits["report-demo"].page.get_by_text(check, exact=True))
    assert row.locator("small code").all_inner_texts() == [code]


def test_the_browser_checks_catch_a_broken_page(browser, tmp_path):
    """The net itself: a page with an outside image, a broken one, a console error and a page error."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!doctype html><p>hello</p><img alt="pixel" src="http://tracker.invalid/pixel.png">'
                   '<img alt="broken" src="data:image/png;base64,AAAA">'
                   '<script>console.error("boom"); throw new Error("bang")</script>')
    v = visit(browser, bad.as_uri())
    assert v.foreign_requests == ["http://tracker.invalid/pixel.png"]
    assert any("boom" in e for e in v.console_errors) and any("bang" in e for e in v.page_errors)
    assert [i["decoded"] for i in v.images] == [False, False]
    assert v.shows("hello") and not v.shows("boom")


# -- what each reader needs to see ---------------------------------------------------------
def _score_line(score, max_score) -> str:
    return SCORE_LINE.format(score=f"{float(score):g}", max_score=f"{float(max_score):g}")


def _shows_score_on_first_screen(v: Visit, line: str) -> None:
    assert v.shows(line), f"no visible {line!r} in:\n{v.text()[:1500]}"
    box = v.page.get_by_text(line).first.bounding_box()
    assert box["y"] + box["height"] <= v.page.viewport_size["height"], "the score is below the first screen"


def _shows_checks_and_reasons(v: Visit, results: list[dict]) -> None:
    """Every public check by name; the reason of each public check that failed."""
    public = [r for r in results if not r["hidden"]]
    assert public
    for r in public:
        assert v.shows(r["name"]), r["name"]
        if r["status"] != "passed":
            assert r["reason"] and v.shows(r["reason"]), r


@pytest.mark.parametrize("name", ["correct", "wrong"])
def test_report_shows_score_checks_and_reasons(visits, made, name):
    run, v = _report(made, name), visits[f"report-{name}"]
    _shows_score_on_first_screen(v, _score_line(run["score"], run["max_score"]))
    _shows_checks_and_reasons(v, run["results"])
    assert (run["score"] == run["max_score"]) == (name == "correct")


def test_report_of_the_wrong_plugin_says_what_to_fix(visits):
    assert visits["report-wrong"].shows(FAILING_CHECK) and visits["report-wrong"].shows(FAILING_HINT)


@pytest.mark.parametrize("student", ["alice", "bob"])
def test_feedback_shows_score_checks_and_reasons(visits, made, grades, student):
    v, row = visits[f"feedback-{student}"], grades[student]
    assert row["status"] == "graded"
    _shows_score_on_first_screen(v, _score_line(row["total"], row["max_total"]))
    tests = json.loads((made / "grades" / "gradescope" / student / "results.json").read_text())["tests"]
    _shows_checks_and_reasons(v, [{"name": t["name"], "status": t["status"], "reason": t["output"],
                                   "hidden": t["visibility"] != "visible"} for t in tests])


def test_feedback_of_bob_says_what_to_fix_as_his_own_report_does(visits, made):
    assert visits["feedback-bob"].shows(FAILING_CHECK) and visits["feedback-bob"].shows(FAILING_HINT)
    wrong = {r["name"]: r["reason"] for r in _report(made, "wrong")["results"] if not r["hidden"] and r["reason"]}
    assert wrong and all(visits["feedback-bob"].shows(reason) for reason in wrong.values())


def test_feedback_of_a_submission_that_cannot_be_loaded_says_why(visits, grades):
    v, row = visits["feedback-carol"], grades["carol"]
    assert row["status"] == "load_error"
    _shows_score_on_first_screen(v, _score_line(0, row["max_total"]))
    assert v.shows(LOAD_ERROR), v.text()[:1500]
    box = v.page.get_by_text(LOAD_ERROR).first.bounding_box()
    assert box["y"] < v.page.viewport_size["height"], "why carol was not graded is below the first screen"


def test_summary_links_every_student_to_an_existing_feedback_page(visits, made, grades):
    v = visits["summary"]
    links = {a.inner_text().strip(): a.get_attribute("href") for a in v.page.locator("a").all()}
    for student in grades:
        assert v.page.get_by_role("link", name=student, exact=True).is_visible(), student
        target = (made / "grades" / links[student]).resolve()
        assert target == (made / PAGES[f"feedback-{student}"]).resolve() and target.is_file()


def test_summary_shows_every_check_and_why_a_submission_failed(visits, grades):
    v = visits["summary"]
    for check in [c for c in next(iter(grades.values())) if c.startswith("attention.")]:
        assert v.shows(check), check
    assert v.shows(LOAD_ERROR), v.text()[:3000]


# -- the report of `make demo` -------------------------------------------------------------
def _top(locator) -> float:
    return locator.bounding_box()["y"]


@pytest.mark.parametrize("name", ["report-demo", "report-headline"])
def test_the_demo_report_opens_with_the_headline_chart_and_one_line_per_component(visits, made, name):
    """The headline chart, then a line per component (its points), then the table of every check."""
    run, v = _report(made, "demo"), visits[name]
    results = run["results"]
    ran = [c for c in collect(list(COMPONENTS)) if not (FAST and c.behavioural)]  # --fast: no behavioural check
    assert len(results) == len(ran)
    components = list(dict.fromkeys(r["component"] for r in results))
    assert components == list(COMPONENTS)
    lines = v.page.locator("table.components tr:has(td)")
    assert lines.count() == len(components)
    for i, component in enumerate(components):
        cells = lines.nth(i).locator("td").all_inner_texts()
        mine = [r for r in results if r["component"] == component]
        assert cells[:2] == [component, f"{sum(r['score'] for r in mine):g} / {sum(r['points'] for r in mine):g}"], cells
        assert bool(cells[3]) == (not FAST), cells  # the figure that matters: measured by a behavioural check
    checks = v.page.locator("table.checks")
    assert checks.locator("tr:has(td)").count() == len(results)
    assert _top(lines.first) < _top(checks)
    _shows_score_on_first_screen(v, _score_line(run["score"], run["max_score"]))
    if IMAGES[name]:  # without --fast, or with the chart drawn in: the page's first image is the headline chart
        first = v.page.locator("img").first
        assert first.get_attribute("data-plot") == HEADLINE_PLOT
        assert v.page.locator(f'img[data-plot="{HEADLINE_PLOT}"]').count() == 1  # not again in the details
        assert _top(first) < _top(lines.first)


@pytest.mark.skipif(bool(FAST), reason="--fast draws no heatmap (TOOLKIT_SCREENSHOTS=1 does)")
@pytest.mark.parametrize("name", ["report-correct", "report-wrong", "feedback-alice", "feedback-bob"])
def test_the_heatmap_shows_the_submission_s_own_attention(visits, name):
    heads = visits[name].page.locator('img[data-plot="attention_heads"]')
    assert heads.count() == 1 and "yours (top) and the reference's" in heads.get_attribute("alt")


# -- the class summary ---------------------------------------------------------------------
def test_summary_opens_with_the_students_and_the_score_distribution(visits, grades):
    v = visits["summary"]
    assert v.page.locator("h2").all_inner_texts()[:3] == ["Students", "Score distribution", "Pass rate per check"]
    students = v.page.locator("table").first
    assert students.locator("tr:has(td)").count() == len(grades) == 3
    assert _top(students) < v.page.viewport_size["height"], "the students are below the first screen"
    chart = v.page.locator("img")
    assert chart.count() == 1 and _top(students) < _top(chart) < _top(v.page.get_by_text("Pass rate per check"))


def test_summary_shows_each_check_s_pass_rate_as_a_bar(visits, made, grades):
    """A bar per check, as wide as its pass rate; bob failed some checks that alice passed."""
    v = visits["summary"]
    tests = json.loads((made / "grades" / "gradescope" / "alice" / "results.json").read_text())["tests"]
    checks = [t["name"] for t in tests]
    assert checks == [c for c in next(iter(grades.values())) if c.startswith("attention.")] and len(checks) > 3
    rows = v.page.locator("tr:has(div.bar)")
    assert rows.count() == len(checks)
    rates = []
    for i, check in enumerate(checks):
        row = rows.nth(i)
        assert row.locator("code").inner_text() == check
        rate = int(re.search(r"(\d+)%", row.inner_text()).group(1)) / 100
        bar, filled = row.locator("div.bar").bounding_box(), row.locator("div.bar div").bounding_box()
        assert bar["width"] > 0 and filled["width"] == pytest.approx(rate * bar["width"], abs=1.5), check
        rates.append(rate)
    assert 1.0 in rates and min(rates) < 1.0
