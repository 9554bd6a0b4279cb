#!/usr/bin/env bash
# Copy the files under PATHS of a bare git snapshot's HEAD into OUT, skipping objects the snapshot
# lacks (large files are absent from snapshots, so `git archive` stops at the first one).
#   scripts/data/export_git_tree.sh GIT_DIR OUT [PATH...]
set -euo pipefail
git_dir=$1; out=$2; shift 2
mkdir -p "$out"
skipped=0
while IFS= read -r -d '' path; do
    if git --git-dir="$git_dir" cat-file -e "HEAD:$path" 2>/dev/null; then
        mkdir -p "$out/$(dirname "$path")"
        git --git-dir="$git_dir" cat-file blob "HEAD:$path" > "$out/$path"
    else
        skipped=$((skipped + 1))
    fi
done < <(git --git-dir="$git_dir" ls-tree -r -z --name-only HEAD -- "$@")
echo "$out: exported, $skipped missing object(s) skipped"
