#!/usr/bin/env bash
# The test command: sets up .venv if needed, then runs the whole test suite (real Blender included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
source .venv/bin/activate
exec python -m pytest -q "$@"
