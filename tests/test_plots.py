"""What the pictures and the check descriptions of the pages say, without a browser.

- the classic-mistake chart (``toolkit.plots.plot_distributions`` with thresholds): a judged bar
  is green when it meets its threshold, red when not, the threshold is drawn, n is said in words
  under each group and a zero-height bar is labelled "0";
- a docstring's Markdown (``toolkit.report.inline_markdown``): `code` in <code>, no backtick left,
  the rest escaped;
- the attention heatmap (``graders.attention.attention_weights``) finds the weights of a
  hand-written softmax too, and none where the rows are not probabilities.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex

from graders.attention import attention_weights
from toolkit.model import GPTConfig
from toolkit.plots import FAIL, PASS, plot_distributions
from toolkit.report import inline_markdown

PLUGINS = Path(__file__).resolve().parent / "plugins"


def _share(p: float, n: int) -> dict:
    return {"p": p, "lo": max(0.0, p - 0.1), "hi": min(1.0, p + 0.1), "n": n}


def test_the_classic_mistake_chart_colours_bars_by_their_threshold(tmp_path):
    """chat stops after none of its 120 replies (threshold: at least 0.8): a red bar labelled 0;
    it writes a user turn in 0.1 of 30 replies (threshold: at most 0.2): a green one."""
    dists = {"base": {"stops": _share(0.05, 20), "user turn": _share(0.9, 30)},
             "chat": {"stops": _share(0.0, 120), "user turn": _share(0.1, 30)}}
    fig = plot_distributions(dists, "What each classic mistake changes", tmp_path / "chart.png", ylabel="rate",
                             thresholds={"stops": (0.8, True), "user turn": (0.2, False)}, judged="chat")
    ax = fig.axes[0]
    bars = ax.patches  # base's two bars, then chat's two
    assert len(bars) == 4
    assert [to_hex(b.get_facecolor()) for b in bars[2:]] == [FAIL, PASS]
    assert PASS not in {to_hex(b.get_facecolor()) for b in bars[:2]} | {FAIL}  # base is not judged
    lines = [c for c in ax.collections if isinstance(c, LineCollection) and c.get_linestyle()[0][1]]  # dashed
    assert sorted(round(seg[0][1], 2) for c in lines for seg in c.get_segments()) == [0.2, 0.8]
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("0") == 1 and texts.count("0.10") == 1
    zero = next(t for t in ax.texts if t.get_text() == "0")
    assert to_hex(zero.get_color()) == FAIL  # a zero-height bar shows its verdict in its value
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["stops\n(base 20, chat 120 replies)\nchat ≥ 0.80", "user turn\n(30 replies)\nchat ≤ 0.20"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["base", "chat", "chat: misses its threshold", "chat: meets its threshold", "threshold (chat)"]
    assert not any("n=" in t for t in texts + ticks + legend)
    assert (tmp_path / "chart.png").stat().st_size > 10_000


def test_a_rate_of_no_reply_says_so_with_no_bar_and_no_interval(tmp_path):
    """The base model answers nothing, so whether it stops after an answer counts no reply."""
    dists = {"base": {"stops": {"p": 0.0, "lo": 0.0, "hi": 1.0, "n": 0}},
             "chat": {"stops": _share(0.95, 120)}}
    ax = plot_distributions(dists, "stops", tmp_path / "s.png", thresholds={"stops": (0.9, True)}, judged="chat").axes[0]
    assert [t.get_text() for t in ax.texts] == ["no replies", "0.95"]
    assert ax.texts[0].get_position()[1] < 0.05  # no interval from 0 to 1 above it
    assert [to_hex(b.get_facecolor()) for b in ax.patches][1] == PASS
    assert [t.get_text() for t in ax.get_xticklabels()] == ["stops\n(base 0, chat 120 replies)\nchat ≥ 0.90"]


def test_a_chart_without_thresholds_keeps_one_colour_per_model(tmp_path):
    dists = {"base": {"Answer": _share(0.2, 50)}, "chat": {"Answer": _share(0.9, 50)}}
    ax = plot_distributions(dists, "headline", tmp_path / "h.png").axes[0]
    assert len({to_hex(b.get_facecolor()) for b in ax.patches}) == 2
    assert {to_hex(b.get_facecolor()) for b in ax.patches}.isdisjoint({PASS, FAIL})
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Answer\n(50 replies)"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["base", "chat"]


@pytest.mark.parametrize("text, html", [
    ("All randomness comes from `generator`: same state", "All randomness comes from <code>generator</code>: same state"),
    ("``a`b`` and `x<y>` & **bold** *em*", "<code>a`b</code> and <code>x&lt;y&gt;</code> &amp; <strong>bold</strong> <em>em</em>"),
    ("2 * 3 * 4 <script>", "2 * 3 * 4 &lt;script&gt;"),
])
def test_docstrings_lose_their_markdown_signs(text, html):
    assert inline_markdown(text) == html


def _module(plugin: str):
    spec = importlib.util.spec_from_file_location(plugin[:-3], PLUGINS / plugin)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return module.toolkit_attention(GPTConfig(n_embd=12, n_head=3)).eval()


@pytest.mark.parametrize("plugin", ["attn_naive_softmax.py", "attn_einsum.py"])
def test_the_heatmap_finds_hand_written_attention_weights(plugin):
    """exp / sum written out (attn_naive_softmax) as well as softmax: (B, nh, T, T), causal rows of probabilities."""
    weights = attention_weights(None, _module(plugin), torch.randn(1, 5, 12, generator=torch.Generator().manual_seed(0)))
    assert weights.shape == (1, 3, 5, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(1, 3, 5)) and (weights.triu(1) == 0).all()


def test_the_heatmap_finds_no_weights_in_a_softmax_over_the_wrong_axis():
    """Its columns sum to 1, not its rows: nothing to draw as attention (the caption says why)."""
    x = torch.randn(1, 5, 12, generator=torch.Generator().manual_seed(0))
    assert attention_weights(None, _module("attn_softmax_axis.py"), x) is None
