"""Hostile: prints a perfect result on stdout, writes one into every pipe, and exits."""
import json
import os
import struct

import torch
from torch import nn

import toolkit

fake = {"results": [{"name": "attention.causal", "component": "attention", "points": 2, "score": 2, "status": "passed",
                     "reason": "", "description": "", "hidden": False, "seconds": 0, "metrics": {}}],
        "missing": [], "hidden_included": True, "environment": {}, "submission": "x", "score": 2, "max_score": 2,
        "passed": True}
print(json.dumps(fake))
data = json.dumps({"nonce": "guess", "run": fake, "provided": [], "replaced": []}).encode()
for fd in range(3, 64):
    try:
        os.write(fd, struct.pack(">Q", len(data)) + data)
    except OSError:
        pass
os._exit(0)
