"""Check definitions, one module per component; snapshots in ``snapshots/``.

Public checks (this folder) ship to students and compare against snapshots recorded from
the instructor's solutions. Hidden checks live in ``hidden/`` and never ship.
"""
