#!/usr/bin/env bash
# Rebuild the material library from its sources (docs/data.md lists them with their licences).
#   scripts/data/build_library.sh [DATA_DIR]      (default /work/data; nothing here is committed)
# Step 1 needs the GitHub snapshots as bare git folders under $DATA_DIR/mirror/<owner>+<name>
# (git clone --bare https://github.com/<owner>/<name>), step 2 `apt-get download` access.
set -euo pipefail
data=${1:-/work/data}
mirror=${MIRROR:-$data/mirror}
src=$data/src
lib=$data/lib
here=$(cd "$(dirname "$0")" && pwd)
export_tree="$here/export_git_tree.sh"
py=${PYTHON:-python}

# 1. Sources: GitHub snapshots (files the snapshot lacks are skipped) and Debian packages.
"$export_tree" "$mirror/DRx3D+glTF-Sample-Assets-OLD/repo" "$src/gltf" Models
"$export_tree" "$mirror/godotengine+tps-demo/repo" "$src/tps-demo"
"$export_tree" "$mirror/N8python+wirehouse/repo" "$src/wirehouse" assets/textures assets/models/polyhaven_pickups
"$export_tree" "$mirror/RobotLocomotion+models/repo" "$src/robotlocomotion" tutorials/models
"$export_tree" "$mirror/OGRECave+ogre/repo" "$src/ogre" Samples/Media/materials/textures/terrain \
    Samples/Media/materials/textures/WoodFloor043_1K_Color.jpg \
    Samples/Media/materials/textures/WoodFloor043_1K_NormalGL.jpg
mkdir -p "$data/debs" "$src/redeclipse" "$src/stk"
for package in redeclipse-data supertuxkart-data; do
    ls "$data/debs/${package}"_*.deb >/dev/null 2>&1 || (cd "$data/debs" && apt-get download "$package")
done
[ -d "$src/redeclipse/usr" ] || dpkg-deb -x "$data"/debs/redeclipse-data_*.deb "$src/redeclipse"
[ -d "$src/stk/usr" ] || dpkg-deb -x "$data"/debs/supertuxkart-data_*.deb "$src/stk"

# 2. Import: ground truth first (the held-out split is drawn from the realistic tiling materials).
imp() { "$py" -m trainer data import --out "$lib" "$@"; }
time imp "$src/gltf" --source gltf-samples --finder gltf --exclude DamagedHelmet --exclude Sponza
time imp "$src/tps-demo" --source godot-tps-demo --finder godot --finder tagged
time imp "$src/wirehouse" --source polyhaven-wirehouse --finder tagged
time imp "$src/robotlocomotion" --source polyhaven-robotlocomotion --finder tagged
time imp "$src/ogre" --source ogre-ambientcg --finder tagged --licence CC0-1.0
time imp "$src/redeclipse/usr/share/games/redeclipse/data" --source red-eclipse --finder red_eclipse \
    --dep5 "$src/redeclipse/usr/share/doc/redeclipse-data/copyright" \
    --max-side 512
time imp "$src/stk/usr/share/games/supertuxkart/data" --source supertuxkart --finder supertuxkart --stylised \
    --dep5 "$src/stk/usr/share/doc/supertuxkart-data/copyright" --max-side 512
"$py" -m trainer data summary "$lib"
