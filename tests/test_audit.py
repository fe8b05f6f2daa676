"""``toolkit.grading.autograd.Audit``: the gradients a child gives are checked against its outputs.

A child answers a training call's backward with gradients the grader cannot recompute (the
submission's code is the child's). At calls drawn from the instructor's seed the grader asks the
same target for its outputs and gradients at two points either side of the call, and checks that the
change of the outputs equals the integral of the gradients along the segment. Correct code agrees to
rounding; gradients of another function (a right loss's behind a wrong loss's values, so that a
model trains well on a wrong hook) fail the stage, whether the submission wrote them (a custom
``autograd.Function``) or its child's interpreter made them up (``Tape.vjp`` replaced).
"""

from pathlib import Path

import pytest
import torch
from torch import nn

from test_remote import _child, _Small
from toolkit.config import PipelineConfig
from toolkit.grading import autograd
from toolkit.grading.autograd import AUDIT_RTOL, AuditFailed
from toolkit.grading.child_pipeline import ChildPipeline, load_parameters
from toolkit.grading.wire import Op

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"


@pytest.fixture
def every_call(monkeypatch):
    """Every call's backward audited (the grader's draws audit one in AUDIT_GAP on average)."""
    monkeypatch.setattr(autograd, "AUDIT_GAP", 1)


def _pretrain(component: str, plugin: Path, tmp_path, steps=3):
    child, _ = _child(plugin)
    config = PipelineConfig.small()
    config = type(config)(**{**config.__dict__, "pretrain": type(config.pretrain)(steps=steps, lr=3e-3)})
    pipeline = ChildPipeline(child, component, config, cache_dir=tmp_path / component, log=lambda msg: None)
    pipeline.base_model
    return child, pipeline.curves["pretrain"]


@pytest.mark.parametrize("component", ["attention", "optimizer"])
def test_correct_code_passes_every_audit_and_trains_as_without_one(tmp_path, monkeypatch, component):
    """The solution's attention (modules of the child's in a float32 GPT) and cross-entropy (a hook
    in the grader's graph), every call audited: the worst disagreement is far below AUDIT_RTOL (figures
    in autograd.py), and the curve is the one an unaudited run gives (an audit changes nothing)."""
    plain_child, plain_curve = _pretrain(component, SOLUTIONS / f"{component}.py", tmp_path / "plain")
    monkeypatch.setattr(autograd, "AUDIT_GAP", 1)
    child, curve = _pretrain(component, SOLUTIONS / f"{component}.py", tmp_path / "audited")
    assert child.audit.done >= 3 and child.audit.worst <= AUDIT_RTOL / 10, (child.audit.done, child.audit.worst)
    assert curve == plain_curve


def test_a_reward_model_and_its_loss_pass_every_audit(every_call):
    """The solution's reward model (on a backbone: integer inputs, only its parameters differentiated)
    and its loss, in float32 and float64, batches of 1 to 16."""
    from graders.reward import _tiny_backbone

    child, _ = _child(SOLUTIONS / "reward.py")
    components = child.components("reward")
    model, loss = components.reward_model(_tiny_backbone()), components.reward_loss
    load_parameters(model, child.request(Op.STATE, child.oid(model)))  # its own initial weights, as the grader trains
    gen = torch.Generator().manual_seed(0)
    for B in (1, 16):
        tokens = torch.randint(300, (2, B, 16), generator=gen)
        lengths = torch.randint(2, 17, (2, B), generator=gen)
        loss(model(tokens[0], lengths[0]), model(tokens[1], lengths[1])).backward()
        r = torch.randn(2, B, dtype=torch.float64, requires_grad=True, generator=gen)
        loss(r[0], r[1]).backward()
    assert child.audit.done >= 6 and child.audit.worst <= AUDIT_RTOL / 10, (child.audit.done, child.audit.worst)


SOLUTION = (SOLUTIONS / "reward.py").read_text()
WRONG_LOSS_RIGHT_GRADIENTS = SOLUTION + '''


class Flipped(torch.autograd.Function):
    """The flipped loss's value, the right loss's gradients."""

    @staticmethod
    def forward(ctx, chosen, rejected):
        ctx.save_for_backward(chosen, rejected)
        return -F.logsigmoid(rejected - chosen).mean()

    @staticmethod
    def backward(ctx, g):
        chosen, rejected = ctx.saved_tensors
        with torch.enable_grad():
            c, r = chosen.detach().requires_grad_(), rejected.detach().requires_grad_()
            return torch.autograd.grad(-F.logsigmoid(c - r).mean(), (c, r), g)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    return Flipped.apply(chosen, rejected)
'''

DOUBLED_GRADIENTS = SOLUTION + '''


class Doubled(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return 2 * g


class Head(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone, self.head = backbone, nn.Linear(backbone.config.n_embd, 1)

    def forward(self, tokens, lengths):
        x = self.backbone.wte(tokens).mean(1)  # (B, C)
        return Doubled.apply(self.head(x).squeeze(-1))


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return Head(backbone)
'''


def _tape_forged(monkeypatch):
    """The child's interpreter answers every vjp with the gradients of the right reward loss (what a
    child can do to its own copy of the toolkit; the grader's process here shares it, so it is undone)."""
    from torch.nn import functional as F

    def vjp(self, upstream):
        c, r = (t.detach().requires_grad_() for t in self.leaves[:2])
        with torch.enable_grad():
            grads = [g.detach() for g in torch.autograd.grad(-F.logsigmoid(c - r).mean(), (c, r), upstream)]
        return {"inputs": grads, "params": {}}

    monkeypatch.setattr(autograd.Tape, "vjp", vjp)


@pytest.mark.parametrize("source, forge, what", [
    (WRONG_LOSS_RIGHT_GRADIENTS, None, "toolkit_reward_loss"),
    (SOLUTION.replace("-F.logsigmoid(chosen - rejected)", "-F.logsigmoid(rejected - chosen)"),
     _tape_forged, "toolkit_reward_loss"),
], ids=["custom-function", "child-interpreter"])
def test_a_right_losss_gradients_behind_a_wrong_losss_values_fail_the_audit(tmp_path, monkeypatch, every_call,
                                                                           source, forge, what):
    """Issue 31: a flipped reward loss whose gradients are the right loss's would train a good reward
    model on a wrong hook. The audit fails the call; the reason names the hook and says "are not those
    of its outputs"."""
    assert "rejected - chosen" in source  # the flipped loss, written by the submission
    plugin = tmp_path / "liar.py"
    plugin.write_text(source)
    child, _ = _child(plugin)
    if forge:
        forge(monkeypatch)
    loss = child.components("reward").reward_loss
    r = torch.randn(2, 16, requires_grad=True, generator=torch.Generator().manual_seed(3))
    with pytest.raises(AuditFailed, match=f"gradients of {what} are not those of its outputs"):
        loss(r[0], r[1]).backward()


def test_a_modules_gradients_that_are_not_its_outputs_fail_the_audit(tmp_path, every_call):
    """A module whose backward doubles its gradients (its parameters would train twice as fast as its
    outputs say): the reason names the module's class."""
    from graders.reward import _tiny_backbone

    plugin = tmp_path / "doubled.py"
    plugin.write_text(DOUBLED_GRADIENTS)
    child, _ = _child(plugin)
    model = child.components("reward").reward_model(_tiny_backbone())
    load_parameters(model, child.request(Op.STATE, child.oid(model)))
    tokens, lengths = torch.randint(300, (4, 16)), torch.full((4,), 16)
    with pytest.raises(AuditFailed, match="gradients of the Head module are not those of its outputs"):
        model(tokens, lengths).sum().backward()


def test_an_audit_asks_as_training_does_and_its_draws_are_the_seeds(monkeypatch):
    """The audit's calls are training calls (a tape, then its vjp) with the dtypes and shapes of the
    audited one, and which calls are audited is drawn from the seed: the same on every run, others
    with another seed, so that only the instructor knows them."""
    def audited(seed: int) -> tuple[list[int], list]:
        monkeypatch.setattr(autograd, "audit_seed", lambda: seed)
        child, server = _child()
        seen = []
        handle = server.handle
        server.handle = lambda op, *args: (seen.append((op, _shapes(args))), handle(op, *args))[1]
        mod = child.unwrap(server.pack(_Small()))
        mod.load_state_dict({n: torch.randn(p.shape, dtype=torch.float64) for n, p in _Small().named_parameters()})
        counts = []
        for _ in range(60):
            before = child.audit.done
            x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
            mod(x, 2.0, torch.arange(3)).sum().backward()
            counts.append(child.audit.done - before)
        return counts, seen

    counts, seen = audited(1)
    assert counts == audited(1)[0] and counts != audited(2)[0] and 1 <= sum(counts) <= 10, counts
    first = next(i for i, n in enumerate(counts) if n)  # before it: a tape and its vjp per call
    real, audit = seen[2 * first: 2 * first + 2], seen[2 * first + 2: 2 * first + 6]
    assert [op for op, _ in real] == [Op.TAPE, Op.VJP] and audit == real + real, (real, audit)


def _shapes(x):
    """The dtypes and shapes of the tensors in a request, in order."""
    if isinstance(x, torch.Tensor):
        return [(x.dtype, tuple(x.shape))]
    if isinstance(x, nn.Module):
        return [(p.dtype, tuple(p.shape)) for p in x.parameters()]
    if isinstance(x, (list, tuple)):
        return [s for v in x for s in _shapes(v)]
    if isinstance(x, dict):
        return [s for v in x.values() for s in _shapes(v)]
    return []


def test_a_hooks_call_never_differentiated_does_not_stop_its_audits(every_call, tmp_path):
    """A hook called with gradients on whose output is never differentiated (a check may do that) leaves its
    graph open in the child; a hook has no weights to move, so its later calls are audited all the same, and
    the right loss's gradients behind a flipped loss's values still fail."""
    plugin = tmp_path / "liar.py"
    plugin.write_text(WRONG_LOSS_RIGHT_GRADIENTS)
    child, _ = _child(plugin)
    loss = child.components("reward").reward_loss
    r = torch.randn(2, 16, requires_grad=True, generator=torch.Generator().manual_seed(4))
    loss(r[0], r[1])  # never differentiated
    with pytest.raises(AuditFailed, match="are not those of its outputs"):
        loss(r[0], r[1]).backward()
