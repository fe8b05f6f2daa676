"""Hostile: the sampler raises the toolkit's own OutOfTime (a BaseException, which the child reports
as "time limit") on every call, outside any time limit; a grader that believed it would end the
whole batch; honest score: 1 (written_out: it never calls the toolkit's sampler, nor returns a token)."""
import toolkit
from toolkit.alarm import OutOfTime


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    raise OutOfTime("not really")
