#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image from the zip that
# `toolkit gradescope` wrote (unpacked in /autograder/source). It installs the toolkit with the
# instructor's graders (the wheel beside this file: hidden checks and solutions included) into
# /autograder/venv, every package at its version in constraints.txt; then it grades the
# instructor's solutions once, as run_autograder grades a student: that checks the image, and
# what no submission changes (the solution's models and draws) stays cached in it.
#
# It needs Python 3.11 or newer: choose a base image whose python3 is (Ubuntu 24.04 has 3.12), or
# install one and name it, e.g. `apt-get install -y python3.11-venv` and PYTHON=python3.11.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
apt-get update -q
apt-get install -y -q python3-venv bubblewrap  # bubblewrap isolates each submission where the container allows it
"$PYTHON" -m venv /autograder/venv
pip=(/autograder/venv/bin/python -m pip install -q --no-cache-dir -c constraints.txt)
# torch's CPU build: for Linux the public index (PyPI) has torch==2.13.0 only as the CUDA build, GBs more
"${pip[@]}" --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
"${pip[@]}" ./toolkit-*.whl

# The instructor's files, for root alone: the grader runs as root, each submission's child as another
# user (without bubblewrap, which a container may not allow, it could read them otherwise)
site="$(/autograder/venv/bin/python -c 'from toolkit.components import ROOT; print(ROOT)')"
chmod -R go-rwx "$site/solutions" "$site/assignments" "$site/graders/hidden" /autograder/source

AUTOGRADER=/autograder SUBMISSION="$site/solutions" RESULTS=/tmp/solutions bash ./run_autograder
/autograder/venv/bin/python - <<'PY'
import json
import sys

results = json.load(open("/tmp/solutions/results.json"))
failed = [f"{test['name']}: {test['output']}" for test in results["tests"] if test["score"] < test["max_score"]]
print("the instructor's solutions:", results["output"], *failed, sep="\n")
if failed:
    sys.exit("setup.sh: the instructor's solutions lose points on this image (above: where)")
PY
