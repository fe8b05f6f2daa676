"""``toolkit.grading.remote``: what the grader accepts from a child, and that no child can block it.

These are the protocol's own guarantees, tested without a child process; ``tests/test_hostile.py``
grades whole hostile submissions against them.
"""

import io
import os
import time

import pytest
import torch
from torch import nn

from toolkit.grading import remote
from toolkit.grading.remote import ChildGone, RemoteModule, load_parameters, plain
from toolkit.model import GPT, GPTConfig
from toolkit.baselines import SDPAttention


def test_plain_keeps_plain_data_and_rebuilds_tensors():
    x = {"a": [1, 2.5, "s", None, True], "t": torch.arange(3), "p": nn.Parameter(torch.ones(2))}
    out = plain(x)
    assert out["a"] == [1, 2.5, "s", None, True]
    assert type(out["t"]) is torch.Tensor and out["t"].tolist() == [0, 1, 2]
    assert type(out["p"]) is torch.Tensor and not out["p"].requires_grad


@pytest.mark.parametrize("value, what", [
    (eval("[" * 40 + "]" * 40), "nested more than"),
    ({1.5: 3}, "dictionary key"),
    ({(1, (2,)): 3}, "dictionary key"),
    (object(), "a value of type object"),
    ("x" * (remote.MAX_STRING + 1), "a string of"),
    (list(range(remote.MAX_ITEMS + 1)), "more than"),
    (1 << 70, "out of range"),
])
def test_plain_refuses_what_is_not_plain_or_too_big(value, what):
    with pytest.raises(ChildGone, match=what):
        plain(value)


def test_plain_refuses_tensor_subclasses():
    class Liar(torch.Tensor):
        pass

    with pytest.raises(ChildGone, match="a value of type Liar"):
        plain(torch.zeros(2).as_subclass(Liar))


def test_a_frame_is_read_only_within_its_size_limit():
    r, w = os.pipe()
    os.write(w, remote.HEADER.pack(remote.MAX_FRAME + 1))
    with pytest.raises(ChildGone, match="bytes at once"):
        remote.read_frame(r, time.monotonic() + 5)
    os.close(r)
    os.close(w)


def test_a_child_that_stops_reading_cannot_block_the_grader():
    r, w = os.pipe()  # nobody reads r: the pipe fills up
    os.set_blocking(w, False)
    t0 = time.monotonic()
    with pytest.raises(ChildGone, match="within the time limit"):
        remote.write_frame(w, b"x" * (4 << 20), deadline=time.monotonic() + 0.5)
    assert time.monotonic() - t0 < 5
    os.close(r)
    os.close(w)


def test_a_child_that_never_answers_cannot_block_the_grader():
    r, w = os.pipe()
    t0 = time.monotonic()
    with pytest.raises(ChildGone, match="within the time limit"):
        remote.read_frame(r, time.monotonic() + 0.5)
    assert time.monotonic() - t0 < 5
    os.close(r)
    os.close(w)


def test_garbage_ends_the_conversation():
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    remote.write_frame(from_child_w, b"not a torch.save document")
    channel = remote.Channel(to_child_w, from_child_r, time.monotonic() + 5)
    with pytest.raises(ChildGone, match="unreadable answer"):
        channel.exchange(b"request")
    assert channel.gone and "unreadable" in channel.gone
    with pytest.raises(ChildGone):  # every later request fails at once
        channel.exchange(b"request")
    for fd in (to_child_r, from_child_w):
        os.close(fd)
    channel.close()


def test_a_torch_save_that_would_run_code_is_refused():
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    buf = io.BytesIO()
    torch.save({"kind": "value", "value": Evil()}, buf)
    with pytest.raises(Exception):
        torch.load(io.BytesIO(buf.getvalue()), weights_only=True)


def test_a_remote_module_mirrors_shapes_on_meta_without_allocating():
    child = remote.Child.__new__(remote.Child)
    huge = [("c_attn.weight", (16384, 16384), torch.float64), ("c_proj.weight", (16384, 16384), torch.float64)]
    module = RemoteModule(child, 1, huge)
    assert all(p.is_meta for p in module.parameters())  # 4 GB reported, nothing allocated
    state = {"c_attn.weight": torch.ones(3, 3, dtype=torch.float64)}
    with pytest.raises(RuntimeError, match="size mismatch"):
        module.load_state_dict(state, strict=False)


def test_parameters_from_a_child_must_match_the_graders_model_exactly():
    model = GPT(GPTConfig(vocab_size=300, block_size=8, n_layer=1, n_head=2, n_embd=8), SDPAttention)
    good = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    load_parameters(model, good)
    assert torch.equal(model.wte.weight, good["wte.weight"]) and torch.equal(model.lm_head.weight, good["wte.weight"])
    for bad in ({**good, "extra": torch.zeros(1)}, {k: v for k, v in good.items() if k != "wte.weight"},
                {**good, "wte.weight": torch.zeros(3, 8)}, {**good, "wte.weight": good["wte.weight"].double()}):
        with pytest.raises(ChildGone):
            load_parameters(model, bad)


def test_an_answer_whose_structure_is_too_big_is_refused_before_it_is_decoded():
    buf = io.BytesIO()
    torch.save({"kind": "value", "value": list(range(2_000_000))}, buf)  # ~10 MB of pickle: seconds to decode
    t0 = time.monotonic()
    with pytest.raises(ChildGone, match="structure takes"):
        remote._check_structure(buf.getvalue())
    assert time.monotonic() - t0 < 1
    buf = io.BytesIO()
    torch.save({"kind": "value", "value": torch.zeros(4 << 20)}, buf)  # 16 MB of tensor data is fine
    remote._check_structure(buf.getvalue())
