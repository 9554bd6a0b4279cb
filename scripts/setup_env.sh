#!/usr/bin/env bash
# Creates (or updates) the project venv in .venv with everything the main job, the trainer and the
# tests need: real Blender as a Python module (bpy 5.0.1, Python 3.11), onnxruntime, torch and friends.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
stamp=.venv/.pbr_forge_installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  # torch first, pinned, so that nothing pulls a different build; then the project with all extras.
  # The pins are pyproject.toml's (the train group): versions are written there only.
  torch_pins="$(python scripts/pins.py torch torchvision)"
  # shellcheck disable=SC2086  # one requirement a line, none holds a space
  python -m pip install --quiet $torch_pins
  python -m pip install --quiet -e ".[blender,train,test]"
  touch "$stamp"
fi
