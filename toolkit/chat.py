"""``toolkit chat``: talk to the model a submission trained, one user turn per line."""

from __future__ import annotations

import sys

import click
import torch

from toolkit.pipeline import Pipeline
from toolkit.plugins import Components, build_manager, load_submission
from toolkit.sample import stream
from toolkit.template import BOS, END, USER, base_prompt, chat_prompt


def chat_loop(submission: str | None, base: bool, temperature: float, top_k: int | None, max_tokens: int,
              top_p: float | None = None) -> None:
    pm = build_manager(load_submission(submission) if submission else [])
    pipeline = Pipeline(Components(pm, only={"sft_mask", "sampler"}), log=lambda m: click.echo(m, err=True))
    if not base:
        pipeline.sft_data  # calls the mask first: one that breaks the contract fails before minutes of training
    model = pipeline.base_model if base else pipeline.chat_model
    tok = pipeline.tokenizer
    stop = {tok.special_tokens[s] for s in (BOS, USER, END)}
    render = base_prompt if base else chat_prompt
    gen = torch.Generator().manual_seed(pipeline.config.seed)
    click.echo(f"{'base' if base else 'chat'} model ready; type a message, Ctrl-D to leave.", err=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        out: list[int] = []
        shown = ""
        for token in stream(model, tok.encode(render(line.strip())), max_tokens, temperature, top_k, stop, gen, top_p,
                            sampler=pipeline.components.sample):
            if token in stop:  # the reply's end, not a part of it
                break
            out.append(token)
            text = tok.decode(out)
            if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                click.echo(text[len(shown):], nl=False)
                shown = text
        click.echo()
