"""Hidden checks: run by the instructor's grader only, never shipped in a student release.

They compare a submission with ``solutions/`` directly, on inputs no student has seen,
so that fitting the public snapshots is not enough.
"""

from toolkit.paths import SOLUTIONS
from toolkit.plugins import Components, build_manager, load_submission

SHUFFLE_SEED = 0x3A61_C0DE_57E2_9B41  # the order reward.accuracy scores held-out answers in (graders/reward.py)
CONTEXTS_SEED = 0x6C0B_7E47_5EED_D1CE  # the shapes, sizes and order of the unit checks' contexts (graders/contexts.py)
HELD_OUT_SEED = 0x5EED_70C3_11D9_A2F7  # the tokenizer's held-out documents and speed's fresh text (graders/tokenizer.py)
AUDIT_SEED = 0x0A0D_17ED_6A2D_5EED  # which gradients from a child are audited, and along what (toolkit/grading/autograd.py)
PAIRS_SEED = 0x2F9A_61D3_C0B5_8E47  # (+ the pipeline's seed) the held-out pairs reward.accuracy ranks (graders/reward.py)


def solution(component: str) -> Components:
    """The instructor's solution of ``component``, swapped in like a submission."""
    return Components(build_manager(load_submission(str(SOLUTIONS / f"{component}.py"))), only=component)
