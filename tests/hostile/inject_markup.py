"""Hostile: puts live markup wherever a string of its reaches a page: with the nonce stolen from the
child's main it sends a result whose check statuses break out of an HTML attribute into <script>,
whose missing components, reasons, descriptions and environment carry <script> and <img onerror>; and,
without a nonce, a hook that returns an object whose class name is markup and a forward that
raises markup; honest score: 0 (it never returns a module that computes anything)."""
import json
import os
import struct
import sys

import toolkit

XSS = '"><script class="hostile-xss">alert(1)</script><img class="hostile-xss" src=x onerror="alert(2)"><b class="hostile-xss'
CHECKS = [("attention.matches_reference", 3), ("attention.causal", 2), ("attention.stable", 1),
          ("attention.written_out", 1)]


def result(name: str, points: int) -> dict:
    return {"name": name, "component": "attention", "points": points, "score": 0, "status": XSS, "reason": XSS,
            "description": XSS, "hidden": False, "seconds": 0.0,
            "metrics": {XSS: XSS, "_examples": [[XSS, XSS, XSS]]}}


def strike() -> None:
    frame, loot = sys._getframe(1), {}
    while frame is not None:
        for name in ("nonce", "answers"):
            if loot.get(name) is None:
                loot[name] = frame.f_locals.get(name)
        frame = frame.f_back
    if loot.get("nonce") is not None and isinstance(loot.get("answers"), int):
        run = {"submission": XSS, "results": [result(n, p) for n, p in CHECKS], "missing": [XSS],
               "hidden_included": XSS, "environment": {XSS: XSS}}
        data = json.dumps({"nonce": loot["nonce"], "run": run, "provided": [], "replaced": []}).encode()
        os.write(loot["answers"], struct.pack(">Q", len(data)) + data)
        os._exit(0)


class Marked(Exception):
    pass


Marked.__name__ = Marked.__qualname__ = "Error" + XSS


def forward(self, x):
    raise Marked(XSS)


NotAModule = type("NotAModule", (), {"__call__": forward, "forward": forward, "__repr__": lambda self: XSS})
NotAModule.__name__ = NotAModule.__qualname__ = XSS


@toolkit.hookimpl
def toolkit_attention(config):
    strike()
    return NotAModule()
