"""Hostile: reads the solution and the hidden checks, and submits the solution."""
from pathlib import Path

import torch
from torch import nn

import toolkit

ROOT = Path(toolkit.__file__).resolve().parent.parent
hidden = (ROOT / "graders" / "hidden" / "checks.py").read_text()
exec((ROOT / "solutions" / "attention.py").read_text())
