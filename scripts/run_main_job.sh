#!/usr/bin/env bash
# The main job: convert the sample textures in examples/ with the shipped models in models/,
# inside real Blender (the bpy module), writing the PNG maps and a .blend per set into out/examples/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
source .venv/bin/activate
out="${1:-out/examples}"
python -m addon.cli convert --input examples --output "$out"
echo "Maps and .blend files are in $out/"
