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
  python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
  python -m pip install --quiet -e ".[blender,train,test]"
  touch "$stamp"
fi
