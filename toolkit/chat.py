"""``toolkit chat``: talk to the model a submission trained, one user turn per line."""

from __future__ import annotations

import sys

import click
import torch

from toolkit.cache import SHIPPED
from toolkit.pipeline import Pipeline
from toolkit.plugins import Components, SubmissionError, build_manager, load_submission, provided_components
from toolkit.sample import stream
from toolkit.template import BOS, END, USER, base_prompt, chat_prompt


def chat_loop(submission: str | None, base: bool, temperature: float, top_k: int | None, max_tokens: int,
              top_p: float | None = None) -> None:
    plugins = load_submission(submission) if submission else []
    provided = provided_components(plugins) if plugins else {}
    if top_p is not None and "sampler" not in provided:
        given = f"{submission} provides none" if submission else "no submission was given"
        raise SubmissionError(f"--top-p needs a sampler plugin ({given}): the toolkit's own sampler has no top-p; "
                              "give a submission with toolkit_sample")
    pipeline = Pipeline(Components(build_manager(plugins), only={"sft_mask", "sampler"}), log=_log)
    if not base:
        pipeline.sft_data  # calls the mask first: one that breaks the contract fails before the fine-tuning
    model = pipeline.base_model if base else pipeline.chat_model
    if not base and "sft_mask" in provided and (SHIPPED / f"sft-{pipeline.chat_key()}.pt").is_file():
        click.echo("chat model: your mask gives the same values as the baseline's: using its chat model", err=True)
    tok = pipeline.tokenizer
    stop = {tok.special_tokens[s]: s for s in (BOS, USER, END)}  # id -> its name
    render = base_prompt if base else chat_prompt
    gen = torch.Generator().manual_seed(pipeline.config.seed)
    click.echo(f"{'base' if base else 'chat'} model ready; type a message, Ctrl-D to leave.", err=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        out: list[int] = []
        shown, ended = "", None
        for token in stream(model, tok.encode(render(line.strip())), max_tokens, temperature, top_k, set(stop), gen,
                            top_p, sampler=pipeline.components.sample):
            if token in stop:  # the reply's end, not a part of it
                ended = stop[token]
                break
            out.append(token)
            text = tok.decode(out)
            if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                click.echo(text[len(shown):], nl=False)
                shown = text
        if not shown.strip():
            click.echo(f"(empty reply: the model wrote {ended or 'nothing printable'} first)", nl=False)
        click.echo()


def _log(message: str) -> None:
    """The pipeline's progress on stderr, without the paths of this machine's files."""
    click.echo(message.split(" /", 1)[0] if "loaded" in message else message, err=True)
