"""The report's plots, drawn with matplotlib (no display needed).

Figures are made with matplotlib's object API (``Figure``, no ``pyplot`` state), so that the
class grader's threads can draw at the same time.
"""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from toolkit.probe import LABELS


def figure(width: float, height: float, dpi: int = 110) -> Figure:
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path) -> None:
    fig.tight_layout()
    fig.savefig(path)


PASS, FAIL = "#2e7d32", "#c62828"  # a judged bar that meets its threshold, one that misses it


def _n_in_words(dists: dict, group: str, unit: str) -> str:
    """How many ``unit`` a group's bars count: "140 replies", or "base 5, chat 120 replies" when they differ."""
    ns = {model: dist[group]["n"] for model, dist in dists.items()}
    if len(set(ns.values())) == 1:
        return f"{next(iter(ns.values()))} {unit}"
    return ", ".join(f"{model} {n}" for model, n in ns.items()) + f" {unit}"


def _meets(p: float, threshold: tuple[float, bool]) -> bool:
    value, at_least = threshold
    return p >= value if at_least else p <= value


def plot_distributions(dists: dict[str, dict[str, dict[str, float]]], title: str, path,
                       ylabel: str = "probability", unit: str = "replies",
                       thresholds: dict[str, tuple[float, bool]] | None = None, judged: str = "") -> Figure:
    """Grouped bar chart: one group per class (or per rate), one bar per model, 95% intervals as
    error bars, each bar's value written above it (a zero-height bar reads "0", one that counts
    nothing "no ``unit``"), and under each group how many ``unit`` it counts. ``dists``: model ->
    group -> {"p", "lo", "hi", "n"} (``toolkit.probe.share``).

    ``thresholds``: group -> (value, at_least), the line the ``judged`` model's bar must reach (or
    stay under): drawn dashed over the group, and that bar and its value are green when it meets
    it, red when not. Returns the figure."""
    thresholds = thresholds or {}
    fig = figure(7, 4.4)
    ax = fig.subplots()
    groups = list(next(iter(dists.values())))
    width = 0.8 / len(dists)
    handles, labels, judged_colours = [], [], {}
    for j, (model, dist) in enumerate(dists.items()):
        xs = [i + (j - (len(dists) - 1) / 2) * width for i in range(len(groups))]
        ps = [dist[g]["p"] for g in groups]
        counted = [dist[g]["n"] > 0 for g in groups]  # a rate of nothing has no bar and no interval
        err = [[p - dist[g]["lo"] if c else 0 for p, g, c in zip(ps, groups, counted)],
               [dist[g]["hi"] - p if c else 0 for p, g, c in zip(ps, groups, counted)]]
        colours = [(PASS if _meets(p, thresholds[g]) else FAIL) if model == judged and g in thresholds and c else f"C{j}"
                   for p, g, c in zip(ps, groups, counted)]
        ax.bar(xs, ps, width, yerr=err, capsize=3, color=colours)
        for x, p, top, c, colour in zip(xs, ps, err[1], counted, colours):
            judged_bar = colour in (PASS, FAIL)  # its value in its colour: a zero-height bar has none to show
            ax.text(x, p + top + 0.02, ("0" if p == 0 else f"{p:.2f}") if c else f"no {unit}", ha="center",
                    va="bottom", fontsize=7, color=colour if judged_bar else "black",
                    fontweight="bold" if judged_bar else "normal", zorder=3,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})  # readable over a threshold line
        handles.append(Patch(color=f"C{j}"))
        labels.append(model)
        judged_colours.update({c: None for c in colours if c in (PASS, FAIL)})
    for c in judged_colours:  # a legend entry per colour a judged bar took
        handles.append(Patch(color=c))
        labels.append(f"{judged}: {'meets' if c == PASS else 'misses'} its threshold")
    ticks = []
    for i, g in enumerate(groups):
        ticks.append(f"{g}\n({_n_in_words(dists, g, unit)})")
        if g in thresholds:
            value, at_least = thresholds[g]
            ax.hlines(value, i - 0.45, i + 0.45, colors="black", linestyles="--", linewidth=1.2)
            ticks[-1] += f"\n{judged} {'≥' if at_least else '≤'} {value:.2f}"
    if thresholds:
        handles.append(Line2D([], [], color="black", linestyle="--"))
        labels.append(f"threshold ({judged})")
    ax.set_xticks(range(len(groups)), ticks, fontsize=8)
    ax.set_ylim(0, 1.45 if thresholds else 1.3)  # room for the legend above the bars
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(handles, labels, fontsize=8, loc="upper center", ncol=3)
    save(fig, path)
    return fig


CURVE_LIMIT = 1e9  # a curve's values beyond this (or not finite) are left out: gaps, not an axis no tick fits


def plot_curves(curves: dict[str, list[float]], title: str, path, ylabel: str = "loss") -> None:
    """One line per curve, against the step; later curves dashed, so that equal curves both show.
    Values that are not finite or beyond ``CURVE_LIMIT`` (a diverged training's) are gaps."""
    fig = figure(7, 3.5)
    ax = fig.subplots()
    for i, (name, ys) in enumerate(curves.items()):
        ys = [y if abs(y) <= CURVE_LIMIT else float("nan") for y in ys]  # NaN too: abs(nan) <= x is False
        ax.plot(range(1, len(ys) + 1), ys, label=name, linestyle=("-", "--", ":", "-.")[i % 4],
                linewidth=2.2 if i == 0 else 1.4)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    save(fig, path)


def plot_token_lengths(stats: dict[str, dict], path) -> None:
    """Share of tokens by length in bytes, one bar per tokenizer; compression in the legend."""
    fig = figure(7, 3.5)
    ax = fig.subplots()
    lengths = sorted({int(k) for s in stats.values() for k in s["token_lengths"]})
    width = 0.8 / len(stats)
    for j, (name, s) in enumerate(stats.items()):
        total = sum(s["token_lengths"].values())
        xs = [x + (j - (len(stats) - 1) / 2) * width for x in lengths]
        ax.bar(xs, [s["token_lengths"].get(str(x), 0) / total for x in lengths], width,
               label=f"{name}: {s['bytes_per_token']:.2f} bytes/token, {s['bpb']:.3f} bits/byte")
    ax.set_xlabel("token length (bytes)")
    ax.set_ylabel("share of tokens")
    ax.set_title("Token lengths on held-out text")
    ax.legend()
    save(fig, path)


def plot_attention(maps: dict, labels: list[str], title: str, path) -> None:
    """One heatmap per head (columns) for each module (rows): who attends to whom."""
    n_head = next(iter(maps.values())).shape[0]
    fig = figure(2.6 * n_head, 2.8 * len(maps))
    axes = fig.subplots(len(maps), n_head, squeeze=False)
    for row, (name, m) in enumerate(maps.items()):
        for h in range(n_head):
            ax = axes[row][h]
            ax.imshow(m[h].detach().float().numpy(), vmin=0, vmax=1, cmap="Blues")
            ax.set_title(f"{name}, head {h + 1}", fontsize=8)
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
            ax.set_yticks(range(len(labels)), labels, fontsize=6)
    fig.suptitle(title)
    save(fig, path)


def plot_histograms(values: dict[str, list[float]], title: str, path) -> None:
    """Overlaid histograms, one per named list of values."""
    fig = figure(7, 3.5)
    ax = fig.subplots()
    for name, vs in values.items():
        ax.hist(vs, bins=30, alpha=0.6, label=f"{name} ({len(vs)} answers)")
    ax.set_xlabel("reward")
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend()
    save(fig, path)


def plot_dial(dists: dict[str, dict[str, dict[str, dict[str, float]]]], title: str, path) -> None:
    """The temperature dial: one panel per model, one stacked bar per sampling setting, split by class."""
    fig = figure(4.2 * len(dists), 4)
    axes = fig.subplots(1, len(dists), sharey=True, squeeze=False)[0]
    for ax, (model, by_setting) in zip(axes, dists.items()):
        settings = list(by_setting)
        bottom = [0.0] * len(settings)
        for label in LABELS:
            ps = [by_setting[s][label]["p"] for s in settings]
            ax.bar(range(len(settings)), ps, 0.7, bottom=bottom, label=label, color=label.colour)
            bottom = [b + p for b, p in zip(bottom, ps)]
        ax.set_xticks(range(len(settings)), [s.replace(", ", "\n") for s in settings], fontsize=8)
        n = next(iter(by_setting.values()))[LABELS[0]]["n"]
        ax.set_title(f"{model} ({n} replies per bar)")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("share of replies")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.suptitle(title)
    save(fig, path)
