"""``toolkit.grading.remote``: what the grader accepts from a child, and that no child can block it.

These are the protocol's own guarantees, tested without a child process; ``tests/test_hostile.py``
grades whole hostile submissions against them.
"""

import contextlib
import io
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from toolkit.grading import remote, wire
from toolkit.grading.child_pipeline import load_parameters
from toolkit.grading.remote import RemoteModule
from toolkit.grading.wire import ChildGone, plain
from toolkit.model import GPT, GPTConfig
from toolkit.plugins import PluginError


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
    ("x" * (wire.MAX_STRING + 1), "a string of"),
    (list(range(wire.MAX_ITEMS + 1)), "more than"),
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
    os.write(w, wire.HEADER.pack(wire.MAX_FRAME + 1))
    with pytest.raises(ChildGone, match="bytes at once"):
        wire.read_frame(r, time.monotonic() + 5)
    os.close(r)
    os.close(w)


def test_a_child_that_stops_reading_cannot_block_the_grader():
    r, w = os.pipe()  # nobody reads r: the pipe fills up
    os.set_blocking(w, False)
    t0 = time.monotonic()
    with pytest.raises(ChildGone, match="within the time limit"):
        wire.write_frame(w, b"x" * (4 << 20), deadline=time.monotonic() + 0.5)
    assert time.monotonic() - t0 < 5
    os.close(r)
    os.close(w)


def test_a_child_that_never_answers_cannot_block_the_grader():
    r, w = os.pipe()
    t0 = time.monotonic()
    with pytest.raises(ChildGone, match="within the time limit"):
        wire.read_frame(r, time.monotonic() + 0.5)
    assert time.monotonic() - t0 < 5
    os.close(r)
    os.close(w)


def test_garbage_ends_the_conversation():
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    wire.write_frame(from_child_w, b"not a torch.save document")
    channel = wire.Channel(to_child_w, from_child_r, time.monotonic() + 5)
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
    model = GPT(GPTConfig(vocab_size=300, block_size=8, n_layer=1, n_head=2, n_embd=8))
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
        wire.check_structure(buf.getvalue())
    assert time.monotonic() - t0 < 1
    buf = io.BytesIO()
    torch.save({"kind": "value", "value": torch.zeros(4 << 20)}, buf)  # 16 MB of tensor data is fine
    wire.check_structure(buf.getvalue())


def _sent(value):
    """``value`` as the grader reads it from a child: through torch.save, torch.load and ``plain``."""
    buf = io.BytesIO()
    torch.save(value, buf)
    return plain(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))


def test_what_the_grader_allocates_is_bounded_by_the_bytes_it_received():
    """A stride-0 view (expand) or one storage viewed many times would grow when cloned: 8 bytes that
    say 64 M elements, or a thousand views of one tensor. Neither is rebuilt."""
    with pytest.raises(ChildGone, match="backed by 8 bytes"):
        _sent(torch.zeros(1, dtype=torch.long).expand(1 << 26))
    with pytest.raises(ChildGone, match="backed by"):
        _sent(torch.zeros(1015).as_strided((1000, 16), (1, 1)))  # overlapping rows
    big = torch.zeros(1 << 20)  # 4 MB, sent once: fine; the same bytes 40 times over: more than a frame holds
    assert _sent([big, big[:10]])[0].shape == (1 << 20,)
    with pytest.raises(ChildGone, match="tensors of more than"):
        _sent([big] * 40)


def test_parameter_names_may_be_digits_as_in_nn_sequential():
    child = remote.Child(SimpleNamespace(gone=None))
    backbone_and_head = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 1))
    specs = remote._param_specs([[n, list(p.shape), "float32"] for n, p in backbone_and_head.named_parameters()], child)
    module = RemoteModule(child, 1, specs)
    assert [n for n, _ in module.named_parameters()] == ["0.weight", "1.weight", "1.bias"]


def test_every_name_nn_module_accepts_crosses_and_only_those_are_refused():
    """Honest names pass: nn.Module takes any name without a dot ("é", spaces, a control character,
    the proxy's own-looking "_child" or "_dtype"). Refused: what no module can have, an empty part
    ("a..b", "../x"), more than 16 parts, a name of every module ("training")."""
    child = remote.Child(SimpleNamespace(gone=None))
    honest = nn.Module()
    for name in ("é", "_child", "_dtype", "_state_to_send", "tab\there"):
        honest.register_parameter(name, nn.Parameter(torch.zeros(1)))
    honest.add_module("tête de lecture", nn.Linear(2, 1))
    sent = [[n, list(p.shape), "float32"] for n, p in honest.named_parameters()]
    module = RemoteModule(child, 1, remote._param_specs(sent, child))
    assert [n for n, _ in module.named_parameters()] == [n for n, _ in honest.named_parameters()]
    load_parameters(module, {n: p.detach() for n, p in honest.named_parameters()})
    assert not any(p.is_meta for p in module.parameters())
    for bad in ("", "a..b", "../x", "a." * 20 + "b", "x" * 201):
        with pytest.raises(ChildGone, match="not \\(name, shape, dtype\\)"):
            remote._param_specs([[bad, [1], "float32"]], child)
    with pytest.raises(ChildGone, match="attribute of every module"):
        RemoteModule(child, 2, remote._param_specs([["training", [1], "float32"]], child))


def test_a_time_limit_error_counts_only_for_a_call_that_had_a_limit():
    """The child marks an OutOfTime answer; the student's code can raise OutOfTime itself. Outside a
    time limit that is the submission's error (a failed check), never the grader's OutOfTime, which
    no check expects there and which would end the whole batch."""
    child = remote.Child(None)
    answer = {"kind": "error", "type": "OutOfTime", "message": "time limit", "time_limit": True}
    with pytest.raises(remote.RemoteError, match="OutOfTime"):
        child.unwrap(answer)
    child.ends = time.monotonic() + 5.0
    with pytest.raises(remote.OutOfTime):
        child.unwrap(answer)


def test_a_call_past_its_own_limit_is_told_from_the_runs_deadline(monkeypatch):
    monkeypatch.setattr(wire, "SLACK", 0.1)
    for run_left, limit, said in ((60, 0.2, wire.CALL_LATE), (0.3, 30, wire.LATE)):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()  # the child never answers
        channel = wire.Channel(to_child_w, from_child_r, time.monotonic() + run_left)
        with pytest.raises(ChildGone) as e:
            channel.exchange(b"request", limit)
        assert str(e.value).startswith(said) and channel.gone == str(e.value)
        for fd in (to_child_r, from_child_w):
            os.close(fd)
        channel.close()


def test_a_handle_is_named_as_the_childs_object_but_its_name_is_never_code():
    child = remote.Child(None)
    arr = child.unwrap({"kind": "object", "oid": 1, "type": "ndarray"})
    assert type(arr).__name__ == "ndarray" and isinstance(arr, remote.RemoteObject)
    assert repr(arr) == "<ndarray object of the submission's>"
    for name in ("<b>x</b>", "a" * 101, "os.system", 3, None):
        assert type(child.unwrap({"kind": "object", "oid": 1, "type": name})).__name__ == "object"
    module = child.unwrap({"kind": "module", "oid": 2, "type": "Attention", "params": [["w", [2], "float32"]]})
    assert isinstance(module, remote.RemoteModule) and type(module).__name__ == "Attention"
    with pytest.raises(RuntimeError, match=r"for Attention:\s+size mismatch"):  # torch's sentence, the child's name
        module.load_state_dict({"w": torch.zeros(3)}, strict=False)


def test_a_childs_sentence_is_one_line_that_prints_as_it_reads():
    said = "\x1b[2J\x1b]0;t\x07ok\x00\x7f\x9b31m \u202egnp.exe\u202c\u2066\u200b<b>x</b>\u2069\n\tnext" + "y" * 5000
    text = remote._message(said)
    assert text.startswith("[2J]0;tok31m gnp.exe<b>x</b> nextyyy") and len(text) == wire.MAX_MESSAGE
    assert text.endswith("…") and text.isprintable()


def test_the_child_sends_as_a_handle_any_tensor_the_grader_would_refuse():
    """A complex or sparse tensor (an honest mistake, say) is not a broken protocol: it goes as a handle,
    the check that asked for it fails with a sentence, and the later checks still run."""
    from toolkit.grading.child import _is_plain

    assert _is_plain([torch.zeros(2), torch.zeros(2, dtype=torch.long), {"a": torch.ones(1, dtype=torch.bool)}])
    for refused in (torch.zeros(2, dtype=torch.complex64), torch.zeros(2).to_sparse(), torch.empty(2, device="meta")):
        assert not _is_plain(refused) and not _is_plain([refused])


class _InProcess:
    """A channel to a child's ``Server`` in this process: the same requests and answers, pickled,
    ``torch.save``d and checked (``plain``) as over the pipe; ``sent`` counts the bytes both ways."""

    gone = None

    def __init__(self, server, lie=None):
        self.server, self.lie, self.sent = server, lie, 0

    def exchange(self, data, limit=None):
        frame = self.server.answer(data)
        if self.lie:
            frame = self.lie(frame)
        self.sent += len(data) + len(frame)
        return plain(torch.load(io.BytesIO(frame), weights_only=True))

    def paused(self):
        return contextlib.nullcontext()


def _child(plugin: Path | None = None, lie=None):
    """A ``remote.Child`` talking to a ``Server`` in this process, with ``plugin``'s components."""
    from toolkit.grading.child import Server
    from toolkit.plugins import build_manager, load_submission, provided_components

    plugins = load_submission(str(plugin)) if plugin else []
    server = Server(build_manager(plugins) if plugin else None, list(provided_components(plugins)) if plugin else [])
    return remote.Child(_InProcess(server, lie)), server


class _Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.w = nn.Parameter(torch.randn(3))

    def forward(self, x, scale, ids):
        return torch.tanh(self.lin(x)) * self.w * scale + ids.double()


def test_remote_autograd_gives_the_gradients_of_local_autograd():
    """The vjp of a module of the child's, and the autograd Function around it, give the gradients local
    autograd gives, to the inputs and to the parameters the grader holds (float64, 1e-10); an integer
    input and a number pass through undifferentiated."""
    torch.manual_seed(0)
    local = _Small().double()
    child, server = _child()
    mod = child.unwrap(server.pack(_Small()))
    mod.load_state_dict({n: p.detach().clone() for n, p in local.named_parameters()})
    x = torch.randn(5, 4, dtype=torch.float64)
    ids = torch.arange(3)
    upstream = torch.randn(5, 3, dtype=torch.float64)
    xr, xl = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yr, yl = mod(xr, 2.0, ids), local(xl, 2.0, ids)
    assert (yr - yl).abs().max() <= 1e-10
    ((yr * upstream).sum() + yr.pow(2).sum()).backward()  # the node is used twice downstream
    ((yl * upstream).sum() + yl.pow(2).sum()).backward()
    assert (xr.grad - xl.grad).abs().max() <= 1e-10
    for (n, p), (m, q) in zip(mod.named_parameters(), local.named_parameters()):
        assert n == m and (p.grad - q.grad).abs().max() <= 1e-10, n
    with torch.no_grad():  # no gradient asked: a plain call, no node
        assert not mod(x, 2.0, ids).requires_grad


def test_a_hook_takes_part_in_autograd_as_its_loss_does_locally():
    """``toolkit_reward_loss`` of the child's, in the grader's graph: the gradients to the rewards and,
    through them, to a model of the grader's, as local autograd gives them (float64, 1e-10)."""
    from toolkit.plugins import Components, build_manager, load_submission

    plugin = Path(__file__).resolve().parents[1] / "solutions" / "reward.py"
    child, _ = _child(plugin)
    remote_loss = child.components("reward").reward_loss
    local_loss = Components(build_manager(load_submission(str(plugin))), only="reward").reward_loss
    head = nn.Linear(6, 1).double()
    feats = torch.randn(2, 8, 6, dtype=torch.float64)
    grads = []
    for loss_fn in (remote_loss, local_loss):
        head.zero_grad()
        chosen, rejected = (head(f).squeeze(-1) for f in feats)
        loss = loss_fn(chosen, rejected)
        loss.backward()
        grads.append((loss.item(), head.weight.grad.clone(), head.bias.grad.clone()))
    (a, *ga), (b, *gb) = grads
    assert abs(a - b) <= 1e-10 and all((g - h).abs().max() <= 1e-10 for g, h in zip(ga, gb))


@pytest.mark.parametrize("lie, what", [
    (lambda g: g.float(), "dtype or shape"),
    (lambda g: g[:-1], "dtype or shape"),
    (lambda g: [g, g], "dtype or shape"),
])
def test_a_gradient_of_the_wrong_dtype_or_shape_is_refused(lie, what):
    """A vjp answer must hold, for each input and parameter, nothing or a tensor of exactly its dtype
    and shape: anything else ends the conversation."""
    def tamper(frame):
        answer = torch.load(io.BytesIO(frame), weights_only=True)
        value = answer.get("value")
        if isinstance(value, dict) and "inputs" in value:
            value["inputs"] = [lie(g) for g in value["inputs"]]
        buf = io.BytesIO()
        torch.save(answer, buf)
        return buf.getvalue()

    child, server = _child(lie=tamper)
    mod = child.unwrap(server.pack(_Small()))
    mod.load_state_dict({n: torch.randn(p.shape, dtype=torch.float64) for n, p in _Small().named_parameters()})
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ChildGone, match=what):
        mod(x, 1.0, torch.arange(3)).sum().backward()
    assert child.channel.gone


def test_the_grader_builds_every_stage_itself(tmp_path):
    """No stage is built in the child: a mask's chat model, and a GPT whose attention layers are the
    child's modules, trained by the grader's own loop (``Pipeline.new_model`` gives them the reference's
    initial weights); the child is only asked for hook calls, outputs and gradients."""
    from toolkit.grading.child_pipeline import ChildPipeline
    from toolkit.config import PipelineConfig

    root = Path(__file__).resolve().parents[1]
    child, server = _child(root / "tests" / "plugins" / "sft_vectorised.py")
    pipeline = ChildPipeline(child, "sft_mask", PipelineConfig.small(), cache_dir=tmp_path, log=lambda msg: None)
    assert isinstance(pipeline.chat_model, GPT) and pipeline.sft_data[1].any() and "sft" in pipeline.curves
    child, server = _child(root / "tests" / "plugins" / "attn_einsum.py")
    config = PipelineConfig.small()
    config = type(config)(**{**config.__dict__, "pretrain": type(config.pretrain)(steps=3, lr=3e-3)})
    attention = ChildPipeline(child, "attention", config, cache_dir=tmp_path / "grade", log=lambda msg: None)
    model = attention.base_model
    assert all(isinstance(block.attn, RemoteModule) for block in model.h) and len(attention.curves["pretrain"]) == 3
    assert not list((tmp_path / "grade").glob("base-*.pt"))  # a model of the child's modules: never cached
    from toolkit.plugins import Components, build_manager, load_submission
    from toolkit.pipeline import Pipeline

    local = Pipeline(Components(build_manager(load_submission(str(root / "tests" / "plugins" / "attn_einsum.py"))),
                                only="attention"), config, cache_dir=tmp_path / "local", log=lambda msg: None)
    local.base_model
    assert attention.curves["pretrain"] == local.curves["pretrain"]  # the same numbers as toolkit run


def test_a_time_limit_bounds_the_whole_block_as_in_one_process():
    """``Context.time_limit(s)`` limits its block in ``toolkit run`` (one alarm): under ``grade`` each
    call gets what is left of the block, not ``s`` afresh, and a call with nothing left never starts."""
    sent = []

    class Channel:
        gone = None

        def exchange(self, data, limit):
            sent.append(limit)
            return {"kind": "value", "value": 1, "generators": []}

    child = remote.Child(Channel())
    with child.time_limit(0.3):
        child.request("call")
        time.sleep(0.2)
        child.request("call")
        time.sleep(0.15)
        with pytest.raises(remote.OutOfTime):
            child.request("call")
    assert len(sent) == 2 and 0.25 < sent[0] <= 0.3 and sent[1] < 0.11
    child.request("call")  # outside the block: no limit
    assert sent[-1] is None


def test_the_graders_own_work_is_not_charged_to_the_child_but_its_calls_meanwhile_are():
    """While the grader fine-tunes from a mask (``Channel.paused``) the child's deadline moves on with
    the clock; a call to the child made meanwhile is the child's time, and a child that never answers
    it is still cut off at its deadline."""
    r, w = os.pipe()
    answers_r, answers_w = os.pipe()
    channel = wire.Channel(w, answers_r, time.monotonic() + 1.0)
    try:
        with channel.paused():
            time.sleep(0.6)
            assert channel.deadline - time.monotonic() > 0.9  # the grader's work: not charged
            t0 = time.monotonic()
            with pytest.raises(ChildGone, match="did not answer within the time limit"):
                channel.exchange(b"ping")  # the child never answers: cut at its remaining second
            assert 0.8 < time.monotonic() - t0 < 1.5
        assert channel.deadline - time.monotonic() < 0.1  # that call used the child's last second
    finally:
        for fd in (r, w, answers_r, answers_w):
            with contextlib.suppress(OSError):
                os.close(fd)


_TRAINING_STEP = '''
import torch
import toolkit
from toolkit.model import Block


class Plain(torch.optim.Optimizer):
    """SGD with momentum, written out: any optimizer the grader's loop can step."""

    def __init__(self, params, lr):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    buf = self.state[p].setdefault("m", torch.zeros_like(p))
                    buf.mul_(0.9).add_(p.grad)
                    p.add_(buf, alpha=-group["lr"])


@toolkit.hookimpl
def toolkit_cross_entropy(logits, targets):
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()) * 1.5


@toolkit.hookimpl
def toolkit_optimizer(params, lr, betas, eps, weight_decay):
    return Plain(params, lr)


@toolkit.hookimpl
def toolkit_block(config, attention):
    return Block(config, attention)
'''


@pytest.mark.parametrize("component", ["optimizer", "block"])
def test_a_submissions_optimizer_and_blocks_train_in_the_graders_loop_as_under_run(tmp_path, component):
    """The optimizer of a submission steps in the child on the gradients of the grader's loss
    (``RemoteOptimizer``), its loss hook takes part in the grader's graph, and its blocks are modules
    of the child's around the child's attention: the grader's pretraining gives the curve ``toolkit run``
    gives, and caches no model trained so."""
    from toolkit.config import PipelineConfig
    from toolkit.grading.child_pipeline import ChildPipeline
    from toolkit.pipeline import Pipeline
    from toolkit.plugins import Components, build_manager, load_submission

    plugin = tmp_path / "step.py"
    plugin.write_text(_TRAINING_STEP)
    child, _ = _child(plugin)
    config = PipelineConfig.small()
    config = type(config)(**{**config.__dict__, "pretrain": type(config.pretrain)(steps=4, lr=3e-3)})
    graded = ChildPipeline(child, component, config, cache_dir=tmp_path / "grade", log=lambda msg: None)
    model = graded.base_model
    local = Pipeline(Components(build_manager(load_submission(str(plugin))), only=component), config,
                     cache_dir=tmp_path / "local", log=lambda msg: None)
    local.base_model
    assert graded.curves["pretrain"] == local.curves["pretrain"] and len(local.curves["pretrain"]) == 4
    if component == "block":
        assert all(isinstance(block, RemoteModule) for block in model.h)
    baseline = Pipeline(config=config, cache_dir=tmp_path / "baseline", log=lambda msg: None)
    baseline.base_model
    assert (graded.curves["pretrain"] != baseline.curves["pretrain"]) == (component == "optimizer")
    assert not list((tmp_path / "grade").glob("base-*.pt"))  # trained with the child's code: never cached


def test_an_optimizer_step_that_gives_parameters_of_another_shape_is_refused(tmp_path):
    """What the child's optimizer gives back must be one tensor of each parameter's shape and dtype."""
    plugin = tmp_path / "liar.py"
    plugin.write_text(_TRAINING_STEP.replace("p.add_(buf, alpha=-group[\"lr\"])",
                                             "p.data = torch.zeros(3)"))
    child, _ = _child(plugin)
    params = [torch.ones(2, 2, requires_grad=True)]
    opt = child.components("optimizer").optimizer(params, 0.1, (0.9, 0.95), 1e-8, 0.0)
    params[0].grad = torch.ones(2, 2)
    with pytest.raises(PluginError, match="shape and dtype"):
        opt.step()
    assert params[0].tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_a_modules_initial_parameters_are_read_from_the_module_in_the_child():
    """``Context.initial_parameters`` of a module of the child's: the values its module holds there
    (``Op.STATE``, as ``ChildPipeline.own`` fetches a module's initial weights), exactly its parameters'
    names, shapes and dtypes. ``block.parameters`` reads the LayerNorms' γ and β so, not through a function
    of the graders that the child could replace in its interpreter: a block whose γ starts at 0 fails it as
    under ``toolkit run``; an answer with a parameter missing ends the conversation."""
    from toolkit.checks import Context, collect, run_check
    from toolkit.config import PipelineConfig

    def drop_one(frame):
        answer = torch.load(io.BytesIO(frame), weights_only=True)
        if isinstance(answer.get("value"), dict) and "ln_1.weight" in answer["value"]:
            del answer["value"]["ln_1.weight"]
        buf = io.BytesIO()
        torch.save(answer, buf)
        return buf.getvalue()

    plugin = Path(__file__).resolve().parents[1] / "tests" / "plugins" / "block_gamma_zero.py"
    parameters = next(c for c in collect(["block"]) if c.name == "block.parameters")
    child, _ = _child(plugin)
    ctx = Context(child.components("block"), "block", PipelineConfig(), log=lambda msg: None, remote=child)
    result = run_check(parameters, ctx)
    assert result.status == "failed" and "γ initialised to zero switches the branch off" in result.reason, result
    child, _ = _child(plugin, lie=drop_one)
    block = child.components("block").block(GPTConfig(n_embd=8, n_head=2), attention=nn.Identity())
    with pytest.raises(ChildGone, match="parameters are not the expected ones"):
        Context(child.components("block"), "block", PipelineConfig(), remote=child).initial_parameters(block)
