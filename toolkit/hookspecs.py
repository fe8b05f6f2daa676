"""The contract: one hook per component a student implements.

A plugin is a Python file (or package, or notebook) with functions named like the hooks
below and decorated with ``@toolkit.hookimpl``::

    import toolkit

    @toolkit.hookimpl
    def toolkit_attention(config):
        return MyAttention(config)

Rules that hold for every hook (the grader turns each broken rule into a clear error):

* Name the function exactly as the hook and use the marker ``toolkit.hookimpl``; a typo in
  either means the toolkit never sees your function.
* Take only the arguments listed, under the same names, and give them **no default
  values**: pluggy never passes an argument that has a default, so you would always get
  the default.
* Return a value; ``None`` is an error.
* Provide each hook once per submission.

Components and their hooks (a component is graded as a whole):

=============  ==========================================
tokenizer      ``toolkit_tokenizer``
attention      ``toolkit_attention``
block          ``toolkit_block``
optimizer      ``toolkit_cross_entropy``, ``toolkit_optimizer``
sft_mask       ``toolkit_sft_mask``
reward         ``toolkit_reward_model``, ``toolkit_reward_loss``
sampler        ``toolkit_sample``
=============  ==========================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Iterable

    import torch
    from torch import nn

    from toolkit.model import GPT, GPTConfig
    from toolkit.tokenizer import Tokenizer

hookspec = pluggy.HookspecMarker("toolkit")


@hookspec(firstresult=True)
def toolkit_tokenizer() -> Tokenizer:
    """Return a new, untrained byte-level BPE tokenizer (a ``toolkit.tokenizer.Tokenizer``).

    The pipeline calls ``tok.train(text, vocab_size)``, then ``tok.encode(text)`` and
    ``tok.decode(ids)``. Ids 0..255 are bytes, ids 256..260 the special tokens
    ``<|bos|> <|user|> <|assistant|> <|end|> <|pad|>``, merges take ids from 261 on.

    :return: an object with ``train``, ``encode``, ``decode``, ``merges`` and
        ``special_tokens`` as documented on ``toolkit.tokenizer.Tokenizer``.

    Example::

        tok = MyTokenizer(); tok.train("aaab", 262)   # one merge: (97, 97) -> 261
        tok.encode("aaab") == [261, 97, 98]
        tok.encode("<|user|>hi") == [257, 104, 105]

    The merge rule is fixed, tie-break included (the grader compares merge lists): the most
    frequent adjacent pair within a chunk of ``toolkit.tokenizer.pretokenize``; on equal
    counts the greatest pair, ``max(counts, key=lambda p: (counts[p], p))``.

    Pitfalls: a special token must never be split into bytes nor merged with its
    neighbours; ``decode`` must not raise on ids that form invalid UTF-8; ``max(counts,
    key=counts.get)`` breaks ties by insertion order, not by the rule above.
    """


@hookspec(firstresult=True)
def toolkit_attention(config: GPTConfig) -> nn.Module:
    """Return a causal multi-head self-attention module for a GPT with ``config``.

    :param config: ``toolkit.model.GPTConfig``; use ``config.n_embd`` (C) and
        ``config.n_head`` (nh); the head size is ``hs = C // nh``.
    :return: an ``nn.Module`` whose ``forward(x)`` maps ``x`` of shape ``(B, T, C)`` to a
        tensor of the same shape and dtype. Position ``t`` of the output may depend on
        positions ``0..t`` of the input only (the causal mask).

    Parameters must be exactly two ``nn.Linear`` layers, so that the toolkit can load the
    reference model's weights into your module:

    * ``c_attn = nn.Linear(C, 3 * C)``: queries, keys and values, concatenated in that
      order on the last axis; head ``h`` uses channels ``h*hs .. (h+1)*hs`` of each;
    * ``c_proj = nn.Linear(C, C)``: the output projection, applied after the heads are
      concatenated back to ``(B, T, C)``.

    A causal-mask buffer is fine if it is not saved: ``register_buffer("mask", m,
    persistent=False)``.

    Pitfalls: scale the scores by ``1 / sqrt(hs)`` (not ``1 / hs``); mask before the
    softmax; softmax over the keys axis (the last one); ``view`` to heads as
    ``(B, T, nh, hs)`` then ``transpose(1, 2)``, never straight to ``(B, nh, T, hs)``.
    """


@hookspec(firstresult=True)
def toolkit_block(config: GPTConfig, attention: nn.Module) -> nn.Module:
    """Return one pre-norm transformer block of a GPT with ``config``, around ``attention``.

    :param config: ``toolkit.model.GPTConfig``; ``C = config.n_embd``.
    :param attention: the causal self-attention module to use, built for this block by the
        attention component (``toolkit_attention``). Keep this very module as ``attn``:
        do not build another one.
    :return: an ``nn.Module`` whose ``forward(x)`` maps ``x (B, T, C)`` to ``(B, T, C)`` in
        the same dtype.

    The forward is pre-norm, as in GPT-2 and nanoGPT::

        x = x + attn(ln_1(x))
        x = x + mlp(ln_2(x))        # mlp(h) = c_proj(gelu(c_fc(h)))

    Submodules, named exactly so (the toolkit loads trained weights into your block):

    * ``ln_1``, ``ln_2``: ``nn.LayerNorm(C)`` with its defaults (eps ``1e-5``, a weight
      ``γ`` initialised to ones and a bias ``β`` to zeros; the *biased* variance over the
      last axis, as ``torch.var(x, -1, unbiased=False)``);
    * ``attn``: the ``attention`` passed in;
    * ``mlp.c_fc = nn.Linear(C, 4 * C)`` and ``mlp.c_proj = nn.Linear(4 * C, C)``, with the
      exact (erf) GELU between them: ``F.gelu(h)``, not ``approximate="tanh"``.

    No dropout. The GPT around the blocks (embeddings, the final LayerNorm and the tied
    head) is the toolkit's, and it initialises every Linear and Embedding weight itself.

    Pitfalls: normalising after the residual sum (post-norm) instead of before each branch;
    dropping a residual (``x = attn(ln_1(x))``); the unbiased variance (``x.var(-1)``) or
    a mean over the wrong axis in a hand-written LayerNorm; the tanh GELU; ``.detach()`` on
    a branch, which cuts the gradients of everything inside it.
    """


@hookspec(firstresult=True)
def toolkit_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The next-token loss: the mean cross-entropy of ``logits`` against ``targets``.

    :param logits: ``FloatTensor (B, T, V)``: the model's scores for each next token.
    :param targets: ``LongTensor (B, T)``: the ids that came next.
    :return: a scalar ``FloatTensor ()`` in the logits' dtype, differentiable:
        the mean over the ``B * T`` positions of ``logsumexp(logits[b, t]) - logits[b, t, targets[b, t]]``,
        which is what ``F.cross_entropy(logits.view(-1, V), targets.view(-1))`` gives.

    It must stay finite for logits as large as ``±1e4``: subtract each row's maximum before
    ``exp`` (``torch.logsumexp`` does). Pitfall: ``log(softmax(z))`` gives ``-inf`` for a
    very unlikely target, and the loss becomes ``inf``.
    """


@hookspec(firstresult=True)
def toolkit_optimizer(params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float], eps: float,
                      weight_decay: float) -> torch.optim.Optimizer:
    """Return an AdamW optimizer of ``params``: a ``torch.optim.Optimizer`` subclass.

    :param params: the tensors to train (``model.parameters()``), as ``torch.optim`` takes them.
    :return: an optimizer whose ``step()`` updates every parameter ``p`` that has a gradient. Each
        parameter has its own state (``m``, ``v`` and step count ``t``), and each step computes, as
        ``torch.optim.AdamW`` does::

            t += 1
            p -= lr * weight_decay * p                 # decoupled weight decay, first
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad ** 2
            m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)   # bias correction
            p -= lr * m_hat / (sqrt(v_hat) + eps)

    A parameter without a gradient at a step (``p.grad is None``) is left alone, its ``t``
    included. Subclass ``torch.optim.Optimizer`` and pass ``dict(lr=lr, betas=betas,
    eps=eps, weight_decay=weight_decay)`` as its defaults: the pipeline sets
    ``param_groups[i]["lr"]`` before every step (warm-up, then cosine decay), so ``step()``
    must read ``lr`` (and the rest) from ``self.param_groups`` at each step, never a copy
    kept at construction. ``zero_grad`` comes with the base class.

    Pitfalls: one step count for all parameters; the learning rate read once in
    ``__init__``; state keyed by anything but the parameter itself (``self.state[p]``);
    weight decay added to the gradient (that is Adam with L2, not AdamW); no bias correction.
    """


@hookspec(firstresult=True)
def toolkit_sft_mask(tokens: torch.Tensor, special_tokens: dict[str, int]) -> torch.Tensor:
    """Say which targets count in the supervised fine-tuning (SFT) loss.

    :param tokens: ``LongTensor (B, T)``: conversations in the chat template, one per row,
        right-padded with ``<|pad|>``. A row reads::

            <|bos|><|user|> What is ...? <|assistant|> The ... . <|end|><|user|> ... <|pad|>...

    :param special_tokens: the ids of the special tokens, e.g. ``{"<|user|>": 257, ...}``.
    :return: ``BoolTensor (B, T - 1)``, aligned with the *targets*: the model reads
        ``tokens[:, :-1]`` and predicts ``tokens[:, 1:]``, and ``mask[b, t]`` says whether
        predicting ``tokens[b, t + 1]`` counts in the loss. True exactly where that target is
        an assistant token or the ``<|end|>`` that closes the assistant's turn.

    Example (one row, ids shown by name)::

        tokens:   bos  user  Hi  ?  assistant  Hello  .  end  pad     (T = 9)
        targets:  user  Hi   ?  assistant  Hello  .  end  pad          (T - 1 = 8)
        mask:     F     F    F  F          T      T  T    F

    Pitfalls: the one-position shift (an off-by-one drops the first answer token or
    supervises the ``<|assistant|>`` tag); forgetting ``<|end|>`` (the model never learns
    to stop); several turns per row; never supervise padding.
    """


@hookspec(firstresult=True)
def toolkit_reward_model(backbone: GPT) -> nn.Module:
    """Return a reward model: the GPT ``backbone`` plus a scalar head.

    :param backbone: a pretrained ``toolkit.model.GPT``; ``backbone.hidden(idx)`` maps
        ``idx (B, T)`` to final hidden states ``(B, T, C)``, ``C = backbone.config.n_embd``.
        Keep it as a submodule so that it is trained with the head.
    :return: an ``nn.Module`` whose ``forward(idx, lengths)`` takes ``idx`` ``LongTensor
        (B, T)`` (right-padded) and ``lengths`` ``LongTensor (B,)`` (real tokens per row) and
        returns rewards ``FloatTensor (B,)``, read at the last real token of each row.

    Pitfall: reading the reward at position ``T - 1`` reads padding for every row but
    the longest; the model then cannot tell answers apart.
    """


@hookspec(firstresult=True)
def toolkit_reward_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Pairwise preference loss for a batch of (chosen, rejected) reward pairs.

    :param chosen: ``FloatTensor (B,)``, rewards of the answers people preferred.
    :param rejected: ``FloatTensor (B,)``, rewards of the answers they rejected.
    :return: a scalar ``FloatTensor ()``: the mean Bradley-Terry loss
        ``-log(sigmoid(chosen - rejected))``; lower when chosen beats rejected.

    Example: equal rewards give ``ln 2 = 0.6931``.
    Pitfall: ``log(sigmoid(z))`` overflows for large negative ``z``; use
    ``torch.nn.functional.logsigmoid``.
    """


@hookspec(firstresult=True)
def toolkit_sample(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
                   generator: torch.Generator) -> torch.Tensor:
    """Pick the next token of every row: greedily, or by sampling with temperature, top-k and top-p.

    :param logits: ``FloatTensor (B, V)``, the model's scores for the next token, one row per
        sequence. An entry may be ``-inf``: that token is never drawn. Every row has at least
        one finite entry; finite entries may be as large as ``1e4`` in magnitude.
    :param temperature: ``>= 0``. ``0`` means **greedy**: the argmax of each row, the lowest
        id when several tie at the maximum (what ``torch.argmax`` returns); ``top_k`` and
        ``top_p`` change nothing then. Otherwise the logits are divided by ``temperature``
        before anything else (below 1 sharpens the distribution, above 1 flattens it).
    :param top_k: ``None`` (off), or an int ``>= 1``: keep the tokens whose scaled logit is
        ``>=`` the ``top_k``-th largest scaled logit of the row. Tokens tied with the
        ``top_k``-th value are **all** kept, so more than ``top_k`` tokens may survive; a
        ``top_k >= V`` keeps every token. ``top_k = 1`` is the argmax when the row's largest
        logit is unique.
    :param top_p: ``None`` (off), or a float in ``(0, 1]``: rank the tokens that are still in
        by probability (the softmax of the scaled logits after top-k, so renormalised over
        what top-k kept), the more likely first and, at equal probability, the **lower id
        first**. Keep the shortest prefix of that ranking whose probabilities sum to ``>=
        top_p``: the token whose probability makes the sum reach ``top_p`` is kept, and so
        the most likely token always is.
    :param generator: a ``torch.Generator``, the **only** source of randomness: draw with
        ``torch.multinomial(probs, 1, generator=generator)`` or equivalent, never with
        torch's global generator. Generators in the same state give the same tokens.
    :return: ``LongTensor (B,)``: one token id per row, drawn from the softmax of the scaled
        logits over the kept tokens (the others have probability 0). Each row is drawn from
        its own logits only: the other rows of the batch change nothing about its distribution.

    The order is fixed: divide by ``temperature``, then top-k, then top-p, then softmax and draw.
    Write it yourself: a hook that calls the toolkit's own sampler (``toolkit.sample``) fails
    the ``sampler.written_out`` check.

    Example (probabilities shown instead of logits; ``logits = probs.log()``)::

        probs = [0.10, 0.45, 0.05, 0.25, 0.15],  top_p = 0.6
        ranked: id 1 (0.45), id 3 (0.25: the sum 0.70 reaches 0.6, kept), id 4, id 0, id 2
        kept {1, 3}: drawn with probabilities 0.45 / 0.70 and 0.25 / 0.70

    Pitfalls: dividing *probabilities* by the temperature changes nothing once they are
    normalised; ``torch.multinomial`` wants probabilities, not logits; ``exp`` of a logit of
    ``1e4`` is ``inf`` (subtract each row's maximum, or use ``torch.softmax``); top-p that
    drops the token crossing ``top_p``, or ranks in ascending order; top-k by position
    (``logits[:, :k]``) instead of by value; reducing over the whole batch instead of each row
    (``dim=-1, keepdim=True``); a new ``torch.Generator()`` instead of ``generator``.
    """
