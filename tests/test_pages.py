"""The pages a student and an instructor open, in a real browser: headless Chromium driven by Playwright.

Three kinds of page, made by the command line as a user makes them:

- the student report: ``toolkit run PLUGIN --fast --report DIR`` -> ``DIR/index.html``, for a
  correct and a wrong attention plugin;
- the feedback page: ``toolkit grade CLASS --out OUT --fast -c attention`` ->
  ``OUT/feedback/<student>/index.html``, for alice (correct), bob (no causal mask) and carol
  (raises at import);
- the class summary of that grading: ``OUT/summary.html``.

Each page is opened once from its file, with every request routed: only the page's own
``file://`` URL and ``data:`` URLs are allowed, anything else is aborted and recorded. On each
page: no console error, no page error, no other request, every ``<img>`` decodes and is shown
at a non-zero size, and the text its reader needs is visible (the score line on the first
screen, the check names, the reason of every failing check, why a submission was not graded).
Only the wording in the constants below is assumed; the scores, check names and reasons are read
from the files the same commands write (``results.json``, ``grades.csv``, Gradescope's
``results.json``).

The browser is Debian's Chromium (``apt-get install chromium``, or ``make browser``), never one
that Playwright downloads; ``TOOLKIT_CHROMIUM`` names another binary. Without Playwright or
Chromium the whole file is skipped, for one stated reason.

Screenshots for the README: ``TOOLKIT_SCREENSHOTS=1 pytest tests/test_pages.py`` makes the pages
without ``--fast`` (with the plots a student gets: minutes, not seconds, more on a cold model
cache), runs the same checks on them and writes a full-page PNG of each to ``docs/screenshots/``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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


def _finish(proc: subprocess.Popen, log: Path, returncode: int) -> None:
    proc.wait(timeout=3600)
    assert proc.returncode == returncode, f"{' '.join(proc.args)}\n{log.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """The two reports and the graded class, made at the same time: the folder that holds them."""
    root = tmp_path_factory.mktemp("pages")
    klass = root / "class"
    klass.mkdir()
    (klass / "alice.py").write_text((PLUGINS / "attn_einsum.py").read_text())
    (klass / "bob.py").write_text((PLUGINS / WRONG_PLUGIN).read_text())
    (klass / "carol.py").write_text("import toolkit\n\nraise RuntimeError('work in progress')\n")
    runs = [(_toolkit(root / "correct.log", "run", PLUGINS / "attn_einsum.py", *FAST, "--report", root / "correct"),
             root / "correct.log", 0),
            (_toolkit(root / "wrong.log", "run", PLUGINS / WRONG_PLUGIN, *FAST, "--report", root / "wrong"),
             root / "wrong.log", 1),
            (_toolkit(root / "grade.log", "grade", klass, "--out", root / "grades", *FAST, "-c", "attention",
                      "--workers", "2", "--timeout", "1200"), root / "grade.log", 0)]
    try:
        for proc, log, returncode in runs:
            _finish(proc, log, returncode)
    finally:
        for proc, _, _ in runs:
            if proc.poll() is None:  # a run that failed or hung must not outlive the tests
                proc.kill()
    return root


@pytest.fixture(scope="module")
def grades(made) -> dict[str, dict]:
    """grades.csv: student -> row."""
    with (made / "grades" / "grades.csv").open() as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def _report(made: Path, name: str) -> dict:
    return json.loads((made / name / "results.json").read_text())


PAGES = {
    "report-correct": "correct/index.html",
    "report-wrong": "wrong/index.html",
    "feedback-alice": "grades/feedback/alice/index.html",
    "feedback-bob": "grades/feedback/bob/index.html",
    "feedback-carol": "grades/feedback/carol/index.html",
    "summary": "grades/summary.html",
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


def visit(context, url: str) -> Visit:
    """Open ``url`` in a new tab of ``context``: only itself and data: URLs may load."""
    page = context.new_page()
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
    with_plots = ["summary"] + ([] if FAST else ["report-correct", "report-wrong", "feedback-alice", "feedback-bob"])
    assert visits[name].images or name not in with_plots  # --fast runs draw no plot; the summary always has one
    for image in visits[name].images:
        assert image["decoded"] and min(image["natural"]) > 0, image
        assert image["visible"] and min(image["shown"]) > 0, image


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
