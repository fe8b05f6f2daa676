"""How much the behaviour figures move with the seed: the reference pipeline trained with the
solutions under several seeds, and each figure's mean, min and max.

    python benchmarks/seeds.py [--seeds 0 1 2 3 4] [--parts behaviour reward tokenizer] [--calibrate]
                               [--set sft.steps=120 --set world.mix=0.3,0.5,0.2 ...] [--masks sft_no_end ...]
                               [--rewards reward_ignores_rejected ...]
                               [--out benchmarks/results/seeds.json]

Another machine rounds torch's CPU kernels differently, and 800 pretraining steps amplify it
(issue 17: held-out Answer 0.58 there, 0.84 here): another seed stands in for another machine.
Seed ``s`` seeds everything that is random: the world (which facts are held out of SFT), the
documents and the chats, the initialisation, the order of the batches of pretraining, SFT, the
reward model and RLHF, and the probe's samples; seed 0 is the pipeline's own configuration.

For each seed, with the solutions (``solutions/*.py``) swapped in one component at a time as the
grader does:

* ``behaviour`` (the SFT mask's pipeline): pretraining, SFT, then
  ``graders.sft_mask.behaviour_metrics``, with the headline sampled ``--headline-samples`` times
  (200 by default, not the pipeline's 40: at p = 0.8, 40 samples give a standard error of 0.06);
* ``reward``: the reward model's held-out accuracy and RLHF's rude/correct replies and KL
  (``graders.reward``), from the chat model trained with the baseline's mask, as the grader does;
* ``tokenizer``: bits per byte of the tokenizer check's small GPT (``graders.tokenizer.measure``);
* ``--masks``: the behaviour of wrong SFT masks (``tests/plugins/<name>.py``) on the same base model;
* ``--rewards``: wrong reward models (``tests/plugins/<name>.py``) on the same chat model: their
  held-out accuracy, RLHF's figures with them, the solution's judgement of their RLHF replies, and
  which behavioural reward checks they lose points on by the calibration in force
  (``<name>.loses_accuracy`` and so on, 1 or 0): what the README claims behaviour catches must
  hold on every seed.

Each seed's figures are written to ``CACHE/results/<key>-seed<s>.json`` as soon as it is done
(``key``: a hash of the configuration, the parts and the sources of ``toolkit/world.py`` and
``toolkit/train.py``), so a stopped sweep resumes and a finished one prints again at once. The
models go to ``--cache`` (default: a folder of its own per source of ``toolkit/train.py``, so
sweeps that differ only after pretraining share their base models); ``--cold`` gives the sweep
an empty folder of its own, so that every time is a first run's. A stage loaded from the cache
reports the time it took when it was trained.

``--calibrate`` writes ``graders/snapshots/calibration.json`` from the sweep: every behavioural
threshold is the worst seed's figure with a stated margin (``graders/calibration.py``). Each seed
is then graded against that file, as the behavioural checks grade (``points_lost``): run other
seeds without ``--calibrate`` to see whether they, like another machine, keep every point.

The targets (issue 17) hold for the worst seed: the script exits 1 if the min (max) over seeds
of a figure misses its bound, or if a seed loses a point. These machines are shared: quote the times with the matmul speed.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import fields, is_dataclass, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import matmul_peak, report  # noqa: E402
from graders import reward as reward_grader  # noqa: E402
from graders import sft_mask as sft_grader  # noqa: E402
from graders import tokenizer as tokenizer_grader  # noqa: E402
from graders.calibration import CALIBRATED  # noqa: E402
from graders.sft_mask import behaviour_metrics  # noqa: E402
from toolkit.config import PipelineConfig  # noqa: E402
from toolkit.pipeline import PIPELINE_VERSION, Pipeline
from toolkit.plugins import Components, build_manager, load_submission  # noqa: E402
from toolkit.probe import Label, Prompt, prompt_set, rate  # noqa: E402
from toolkit.world import World  # noqa: E402

PARTS = ("behaviour", "reward", "tokenizer")
TARGETS = [  # (figure, comparison, bound): the worst seed must meet it
    ("answer_seen", ">=", 0.9), ("answer_held_out", ">=", 0.8), ("correct_held_out", ">=", 0.7),
    ("clarification", ">=", 0.8), ("stops", ">=", 0.95), ("base_answer", "<=", 0.2),
    ("base_continuation_top", ">=", 1), ("headline_chat_answer", ">=", 0.85),
    ("pretrain_s", "<=", 180), ("sft_s", "<=", 60),
]
CODE = ("toolkit/world.py", "toolkit/train.py", "toolkit/probe.py", "toolkit/rlhf.py", "toolkit/sample.py",
        "toolkit/data_stages.py", "graders/sft_mask.py", "graders/reward.py", "graders/tokenizer.py",
        "graders/hidden/__init__.py")  # what a seed's figures depend on (the hidden seeds: its held-out data)
MASK_FIGURES = ("answer_seen", "answer_held_out", "clarification", "stops", "writes_user_turn")


# -- configuration -------------------------------------------------------------------------
def override(obj, path: list[str], value):
    """``obj`` (a frozen dataclass) with the field at ``path`` set to ``value``."""
    head, *rest = path
    if head not in {f.name for f in fields(obj)}:
        raise SystemExit(f"--set: {type(obj).__name__} has no field {head!r}")
    return replace(obj, **{head: override(getattr(obj, head), rest, value) if rest else value})


def parse_sets(sets: list[str]) -> tuple[PipelineConfig, dict]:
    """``--set a.b=value`` pairs: the pipeline's configuration, and the World's fields (``world.x=``)."""
    config, world = PipelineConfig(), {}
    for item in sets:
        path, _, text = item.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        value = tuple(value) if isinstance(value, list) else value
        if path.startswith("world."):
            world[path[len("world."):]] = value
        else:
            config = override(config, path.split("."), value)
    return config, world


def seeded(config: PipelineConfig, seed: int) -> PipelineConfig:
    """``config`` with every seed set to ``seed``: the world, the initialisation and each stage's batches."""
    stages = {name: replace(getattr(config, name), seed=seed) for name in ("pretrain", "sft", "reward", "rlhf")}
    return replace(config, seed=seed, **stages)


def source_hash(*paths: str) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update((ROOT / p).read_bytes())
    return h.hexdigest()[:12]


def sweep_key(config: PipelineConfig, world: dict, parts, masks, rewards=()) -> str:
    extra = {"rewards": sorted(rewards)} if rewards else {}  # the keys of earlier sweeps stay as they were
    blob = json.dumps({"config": config.to_dict(), "world": world, "parts": sorted(parts), "masks": sorted(masks), **extra,
                       "version": PIPELINE_VERSION, "code": source_hash(*CODE)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def points_lost(run: dict) -> list[str]:
    """What the behavioural checks would take from the solution under this seed, by the thresholds of
    ``graders/snapshots/calibration.json`` (its figures are those the checks grade)."""
    try:
        from graders.hidden.checks import gain_full  # the instructor's copy only
    except ModuleNotFoundError:
        gain_full = None

    lost = []
    if "answer_seen" in run:
        fraction, reasons = sft_grader.score(run, sft_grader.thresholds())
        lost += [f"sft_mask.behaviour: {r}" for r in reasons]
    if "reward_accuracy" in run:
        fraction, reason = reward_grader.accuracy_score(run["reward_accuracy"])
        lost += [f"reward.accuracy: {reason}"] if fraction < 1 else []
        lost += [f"reward.rlhf_improves: {r}" for r in reward_grader.rlhf_failures(run)]
        if gain_full is not None and run["reward_gain"] < gain_full():
            lost.append(f"reward.rlhf_judged_by_solution: gain {run['reward_gain']:.2f}")
    if "tok_bpb" in run:
        fraction, reason = tokenizer_grader.bpb_score(run["tok_bpb"])
        lost += [f"tokenizer.behaviour: {reason}"] if fraction < 1 else []
        lost += [] if run["tok_bpb"] < run["tok_shuffled_bpb"] else ["tokenizer.behaviour: shuffled text as easy"]
    return lost


# -- one seed ------------------------------------------------------------------------------
class Timings:
    """The seconds each cached model took to train, kept next to it: a later sweep loads the model
    from the cache, and still reports what training it cost."""

    def __init__(self, cache: Path):
        self.path = cache / "timings.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, pipeline: Pipeline, stage: str, key: str) -> float | None:
        if stage in pipeline.timings:
            self.data[key] = {"s": pipeline.timings[stage], "GFLOPs": round(matmul_peak(repeats=3) / 1e9, 1)}
            self.path.write_text(json.dumps(self.data, indent=1))
        return self.data.get(key, {}).get("s")


def pipeline(components: Components, config: PipelineConfig, world: dict, cache: Path) -> Pipeline:
    p = Pipeline(components, config, cache_dir=cache, log=lambda m: None, shipped=False)  # seed 0 too: timed like the others
    if world:
        p.__dict__["world"] = World(seed=config.seed, **world)  # the experiment's world instead of the default one
    return p


def sheet_answers(p: Pipeline) -> dict:
    """What pretraining taught SFT to build on: the base model given a Q/A sheet's first line
    ("Q : What is the capital of Chad ? A :") on the held-out facts. ``base_sheet_answer``: the share
    of replies about the subject asked (copied from the question); ``base_sheet_correct``: right too."""
    prompts = [Prompt("held_out", f"Q : {q.question} A :", q.fact) for q in prompt_set(p.world) if q.kind == "held_out"]
    gens = p.probe(p.base_model, False, prompts, 0.0)
    return {"base_sheet_answer": rate(gens, lambda g: g.label == Label.ANSWER),
            "base_sheet_correct": rate(gens, lambda g: g.correct)}


def plugin(name: str):
    """The plugin manager of ``tests/plugins/<name>.py``."""
    return build_manager(load_submission(str(ROOT / "tests" / "plugins" / f"{name}.py")))


def wrong_reward_figures(name: str, wrong: Pipeline, solution: Pipeline) -> dict:
    """A wrong reward model's figures (its RLHF replies judged, as the hidden check judges, by the
    solution's reward model of ``solution``)."""
    got = {"reward_accuracy": reward_grader.held_out_accuracy(wrong)[0]}
    metrics = reward_grader.rlhf_metrics(wrong)
    got.update({k: v for k, v in metrics.items() if not k.startswith("_")})
    got["reward_gain"] = reward_grader.reward_gain(solution, metrics["_replies"])
    return {f"{name}.{k}": v for k, v in got.items()}


def reward_losses(run: dict, name: str) -> dict:
    """Which behavioural reward checks the wrong reward model ``name`` loses points on in ``run``
    (1 or 0), by the thresholds of the calibration in force (after ``--calibrate``, the new one):
    ``points_lost``, the solution's own verdict, applied to the wrong model's figures."""
    lost = {line.split(":")[0] for line in points_lost({k[len(name) + 1:]: v for k, v in run.items()
                                                         if k.startswith(f"{name}.")})}
    return {f"{name}.loses_{check}": float(f"reward.{check}" in lost)
            for check in ("accuracy", "rlhf_improves", "rlhf_judged_by_solution")}


def run_seed(seed: int, config: PipelineConfig, world: dict, parts, masks, cache: Path, rewards=()) -> dict:
    cfg = seeded(config, seed)
    solutions = build_manager(load_submission(str(ROOT / "solutions")))
    timings = Timings(cache)
    out: dict = {"seed": seed, "GFLOPs_at_start": round(matmul_peak() / 1e9, 1)}
    p = pipeline(Components(solutions, only="sft_mask"), cfg, world, cache)
    if "behaviour" in parts or "reward" in parts or masks or rewards:
        t0 = time.perf_counter()
        _ = p.base_model
        out["base_loaded"] = "pretrain" not in p.timings
        out["pretrain_s"] = timings.get(p, "pretrain", f"base-{p.base_key()}")
        out["base_total_s"] = time.perf_counter() - t0  # data, tokenizer and pretraining (or loading)
        out["base_val_loss"] = p.val_loss(p.base_model)
    if "behaviour" in parts:
        t0 = time.perf_counter()
        m = behaviour_metrics(p)
        out["sft_s"] = timings.get(p, "sft", f"sft-{p.chat_key()}")
        out["probe_s"] = time.perf_counter() - t0 - p.timings.get("sft", 0.0)
        out.update({k: v for k, v in m.items() if not k.startswith("_")})
        out["base_continuation_top"] = float(m["base_top"] == Label.CONTINUATION)
        for label in Label:  # the headline's whole distribution: what the chat model says when it does not answer
            out[f"headline_chat_{label.lower()}"] = m["_dists"]["headline"]["chat"][label]["p"]
        out["headline_base_continuation"] = m["_dists"]["headline"]["base"][Label.CONTINUATION]["p"]
        out["sft_final_loss"] = sum(p.curves["sft"][-10:]) / 10
        out.update(sheet_answers(p))
    if "reward" in parts or rewards:
        r = p.sharing_base(Components(solutions, only="reward"))
        _ = r.chat_model
        out["reward_chat_sft_s"] = timings.get(r, "sft", f"sft-{r.chat_key()}")
        out["reward_accuracy"] = reward_grader.held_out_accuracy(r)[0]
        out["reward_s"] = r.timings["reward"]
        t0 = time.perf_counter()
        metrics = reward_grader.rlhf_metrics(r)
        out.update({k: v for k, v in metrics.items() if not k.startswith("_")})
        out["reward_gain"] = reward_grader.reward_gain(r, metrics["_replies"])  # judged by its own reward model
        out["rlhf_s"] = r.timings["rlhf"]
        out["judge_s"] = time.perf_counter() - t0 - r.timings["rlhf"]
    for name in masks:
        m = behaviour_metrics(p.sharing_base(Components(plugin(name), only="sft_mask")))
        out.update({f"{name}.{k}": m[k] for k in MASK_FIGURES})
    for name in rewards:
        wrong = r.sharing_base(Components(plugin(name), only="reward"))
        wrong.__dict__["chat_model"] = r.chat_model  # the same chat model: the mask is the baseline's in both
        out.update(wrong_reward_figures(name, wrong, r))
    if "tokenizer" in parts:
        t = pipeline(Components(solutions, only="tokenizer"), seeded(tokenizer_grader.BEHAVIOUR, seed), world, cache)
        got = tokenizer_grader.measure(t)
        out["tok_pretrain_s"] = timings.get(t, "pretrain", f"base-{t.base_key()}")
        out.update({f"tok_{k}": v for k, v in got.items() if k != "token_lengths"})
    out["GFLOPs_at_end"] = round(matmul_peak() / 1e9, 1)
    return out


# -- grading each seed ----------------------------------------------------------------------
def write_calibration(runs: list[dict]) -> None:
    """graders/snapshots/calibration.json: each calibrated figure under each seed, with the date and machine.
    The figures this sweep does not measure (a component's own sweep, ``benchmarks/sweep_<component>.py``,
    writes them) are kept as they are."""
    from graders import calibration

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown CPU"
    doc = {"seeds": [r["seed"] for r in runs], "date": time.strftime("%Y-%m-%d"),
           "machine": f"{cpu}, {PipelineConfig().threads} threads, torch {torch.__version__}",
           "figures": {name: [round(r[name], 4) for r in runs] for name in CALIBRATED if all(name in r for r in runs)}}
    if calibration.PATH.exists():  # the figures another sweep writes (benchmarks/sweep_<component>.py) stay when the seeds do
        old = json.loads(calibration.PATH.read_text())
        if old["seeds"] == doc["seeds"]:
            doc["figures"] = {**{k: v for k, v in old["figures"].items() if k in CALIBRATED}, **doc["figures"]}
    calibration.PATH.write_text(json.dumps(doc, indent=1) + "\n")
    calibration.calibration.cache_clear()
    print(f"wrote {calibration.PATH.relative_to(ROOT)}: {len(doc['figures'])} figures over seeds {doc['seeds']}")


# -- the sweep -----------------------------------------------------------------------------
def summarise(runs: list[dict]) -> dict[str, dict]:
    """figure -> {"mean", "min", "max", "seeds": [...]} over the seeds (numbers only)."""
    out = {}
    for name in runs[0]:
        values = [r.get(name) for r in runs]
        if name == "seed" or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        out[name] = {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "seeds": values}
    return out


def print_table(runs: list[dict], summary: dict) -> None:
    seeds = [r["seed"] for r in runs]
    print(f"{'figure':34} {'mean':>7} {'min':>7} {'max':>7}  {'target':9}" + "".join(f" {f's{s}':>7}" for s in seeds))
    for name, s in summary.items():
        target = next((f"{op} {b}" for n, op, b in TARGETS if n == name), "")
        cells = "".join(f" {v:7.3f}" for v in s["seeds"])
        print(f"{name:34} {s['mean']:7.3f} {s['min']:7.3f} {s['max']:7.3f}  {target:9}{cells}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--masks", nargs="*", default=[], help="wrong SFT masks from tests/plugins, e.g. sft_no_end")
    ap.add_argument("--rewards", nargs="*", default=[],
                    help="wrong reward models from tests/plugins, e.g. reward_ignores_rejected")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                    help="a PipelineConfig field (sft.steps=120, model.n_embd=96) or a World field (world.mix=0.3,0.5,0.2)")
    ap.add_argument("--headline-samples", type=int, default=200)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--cold", action="store_true", help="an empty cache folder of its own: every stage trained")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "seeds.json")
    ap.add_argument("--calibrate", action="store_true",
                    help="write graders/snapshots/calibration.json from these seeds (then grade each against it)")
    args = ap.parse_args()

    config, world = parse_sets(args.sets)
    config = replace(config, headline_samples=args.headline_samples)
    key = sweep_key(config, world, args.parts, args.masks, args.rewards)
    root = Path(tempfile.gettempdir()) / "toolkit-seeds"
    cache = args.cache or (root / f"cold-{key}" if args.cold else root / f"train-{source_hash('toolkit/train.py')}")
    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)
    print(f"sweep {key}: seeds {args.seeds}, parts {args.parts}, masks {args.masks}, rewards {args.rewards}, cache {cache}\n"
          f"settings {args.sets or 'defaults'}", flush=True)
    runs = []
    for seed in args.seeds:
        path = results / f"{key}-seed{seed}.json"
        if not path.exists():
            t0 = time.perf_counter()
            run = run_seed(seed, config, world, args.parts, args.masks, cache, args.rewards)
            run["seed_total_s"] = time.perf_counter() - t0
            path.write_text(json.dumps(run, indent=1) + "\n")
        runs.append(json.loads(path.read_text()))
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in runs[-1].items() if k != "seed"), flush=True)
    if args.calibrate:
        write_calibration(runs)
    for run in runs:
        run.update({k: v for name in args.rewards for k, v in reward_losses(run, name).items()})
    summary = summarise(runs)
    print_table(runs, summary)
    missed = []
    for run in runs:  # a correct submission on another machine is never failed by rounding: nor is any seed here
        missed += [f"seed {run['seed']} loses points: {lost}" for lost in points_lost(run)]
    for name, op, bound in TARGETS:
        if name in summary:
            worst = summary[name]["min"] if op == ">=" else summary[name]["max"]
            if not (worst >= bound if op == ">=" else worst <= bound):
                missed.append(f"{name}: worst seed {worst:.3f}, target {op} {bound}")
    return report(args.out, {k: {m: v for m, v in s.items()} for k, s in summary.items()}, missed,
                  sweep=key, seeds=args.seeds, settings=args.sets, world=world, parts=args.parts, masks=args.masks,
                  rewards=args.rewards, headline_samples=args.headline_samples, config=config.to_dict(), runs=runs)


if __name__ == "__main__":
    sys.exit(main())
