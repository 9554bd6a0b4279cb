#!/usr/bin/env bash
# One device-machine call: train the whole plan (trainer/plans/skyrim.toml: A0 -> A -> B -> C -> C' -> D)
# at 1K on one GPU from the shipped weights, export the ONNX set, and pack it for the trip back.
#
#   bash scripts/gpu/train_h200.sh            # on the device machine, from the repository root
#
# Reads the packed library shard (scripts/gpu/pack_library.py, default gpu_shard/lib) and the carried
# wheels (.whl/), writes procedural materials at 1024 px on the device, trains into $WORK, exports with
# `python -m trainer export`, and leaves under $OUT: log.txt and pbr_gpu_result.tar.gz.part-aa, -ab, ...
# (each at most 15 MiB). Unpack here with
#   cat OUT/pbr_gpu_result.tar.gz.part-* | tar -xzf - -C /tmp/gpu_result
# which gives /tmp/gpu_result/export (ONNX set + manifest.json + trainable/) and /tmp/gpu_result/run
# (the run's configuration, state, gates and TensorBoard logs). Nothing is written into the repository.
#
# Every setting is an environment variable (defaults: the H200 run; docs/gpu.md). The time budget
# BUDGET_S covers training and export: training runs under `timeout` for BUDGET_S - EXPORT_RESERVE_S
# seconds and, when it is cut short, the export takes the run's latest finished job (as
# `python -m trainer export --run` does for any stopped run; the manifest's provenance.checkpoint says
# which). The export itself is cut at HARD_LIMIT_S - PACK_RESERVE_S (570 - 30 s); then only the weights
# come back (export/trainable/), to be exported here. CPU smoke test (docs/gpu.md):
#   DEVICE=cpu RES_SCALE=0.0625 EPOCHS_SCALE=0.05 MAX_STEPS=2 BATCH_SIZE=2 SYNTH_COUNT=4 SYNTH_SIZE=64 \
#     SYNTH_JOBS=1 NUM_WORKERS=0 BUDGET_S=1500 EXPORT_RESERVE_S=300 HARD_LIMIT_S=2000 PYTHON=.venv/bin/python \
#     OUT=/tmp/gpu_smoke_out bash scripts/gpu/train_h200.sh
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1   # nothing written into the repository tree
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/pbr_gpu_out}
WORK=${WORK:-/tmp/pbr_gpu}
SHARD=${SHARD:-gpu_shard/lib}
WHEELS=${WHEELS:-.whl}
DEVICE=${DEVICE:-cuda}
PLAN=${PLAN:-scripts/gpu/skyrim_1k.toml}  # D at 1K (see that file)
BUDGET_S=${BUDGET_S:-450}              # training + export, seconds of wall time from the start
EXPORT_RESERVE_S=${EXPORT_RESERVE_S:-90}
HARD_LIMIT_S=${HARD_LIMIT_S:-570}      # the whole script, under the run tool's 600 s: the export is cut
PACK_RESERVE_S=${PACK_RESERVE_S:-30}   # at HARD_LIMIT_S - PACK_RESERVE_S and the weights come back instead
SYNTH_COUNT=${SYNTH_COUNT:-128}        # procedural materials (MatSynth role, besides the shard's truth)
SYNTH_SIZE=${SYNTH_SIZE:-1024}
SYNTH_JOBS=${SYNTH_JOBS:-12}           # synth processes in parallel
RES_SCALE=${RES_SCALE:-1.0}            # 1.0: the plan's 1K (and D's 2K)
EPOCHS_SCALE=${EPOCHS_SCALE:-0.1}      # A0 1-2, A 3-4, B/C/C' 1 epoch, D 1 epoch per job
MAX_STEPS=${MAX_STEPS:-16}             # optimiser steps per epoch
BATCH_SIZE=${BATCH_SIZE:-8}
NUM_WORKERS=${NUM_WORKERS:-14}
VAL_BATCHES=${VAL_BATCHES:-2}
LR_SCALE=${LR_SCALE:-5}                # a miniature of the plan's steps: larger steps (docs/training.md)
EXTRA_ARGS=${EXTRA_ARGS:-}
export DEVICE PLAN BUDGET_S EXPORT_RESERVE_S HARD_LIMIT_S SYNTH_COUNT SYNTH_SIZE SYNTH_JOBS RES_SCALE EPOCHS_SCALE MAX_STEPS \
    BATCH_SIZE NUM_WORKERS VAL_BATCHES LR_SCALE EXTRA_ARGS SHARD   # recorded in gpu_session.json
mkdir -p "$OUT" "$WORK"
RUN=$WORK/run
EXPORT=$WORK/export
PROC=$WORK/procedural

main() {
    local t0=$SECONDS
    echo "== PBR Forge GPU run $(date -u +%FT%TZ) on $(hostname); repo $REPO ($(git rev-parse --short HEAD 2>/dev/null || echo 'no git'))"
    # Wheels the machine lacks (pyproject.toml's etcpak with its archspec, texture2ddecoder; onnxscript + onnx-ir for the
    # dynamo ONNX exporter; ml_dtypes where onnx-ir needs it): installed only when the import fails.
    if [ -d "$WHEELS" ]; then
        local site=$WORK/site
        for pair in archspec:archspec etcpak:etcpak texture2ddecoder:texture2ddecoder ml_dtypes:ml_dtypes onnx_ir:onnx_ir onnxscript:onnxscript; do
            local module=${pair%%:*} stem=${pair##*:}
            if ! PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" -c "import $module" 2>/dev/null; then
                local wheel
                wheel=$(ls "$WHEELS"/"$stem"-*.whl 2>/dev/null | head -1)
                if [ -n "$wheel" ]; then
                    echo "installing $wheel"
                    "$PYTHON" -m pip install -q --no-index --no-deps --target "$site" "$wheel" || return 1
                else
                    echo "warning: $module is missing and no wheel for it is in $WHEELS"
                fi
            fi
        done
        export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    fi
    command -v nvidia-smi >/dev/null && nvidia-smi
    "$PYTHON" - <<'EOF' || return 1
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "devices", torch.cuda.device_count())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name} {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
missing = []
for name in ("numpy", "PIL", "pyarrow", "safetensors", "timm", "transformers", "peft", "onnx", "onnxruntime",
             "onnxscript", "torchvision", "tensorboard", "etcpak", "texture2ddecoder"):
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - report every missing module at once
        missing.append(f"{name} ({exc})")
print("missing:", ", ".join(missing) if missing else "nothing")
raise SystemExit(1 if missing else 0)
EOF
    if [ ! -f "$SHARD/index.json" ]; then
        echo "error: no library shard at $SHARD (pack it with scripts/gpu/pack_library.py and carry it)"; return 1
    fi
    echo "== $((SECONDS - t0)) s: procedural materials: $SYNTH_COUNT at $SYNTH_SIZE px in $SYNTH_JOBS processes"
    rm -rf "$PROC" && mkdir -p "$PROC"
    local per=$(( (SYNTH_COUNT + SYNTH_JOBS - 1) / SYNTH_JOBS )) left=$SYNTH_COUNT pids=() j=0
    while [ "$left" -gt 0 ]; do
        local n=$(( left < per ? left : per ))
        OMP_NUM_THREADS=1 "$PYTHON" -m trainer synth --out "$PROC/p$j" --count "$n" --size "$SYNTH_SIZE" \
            --seed $((j + 1)) --format matsynth > "$PROC/p$j.log" 2>&1 &
        pids+=($!); left=$((left - n)); j=$((j + 1))
    done
    for pid in "${pids[@]}"; do wait "$pid" || { cat "$PROC"/p*.log; echo "error: synth failed"; return 1; }; done
    cat "$PROC"/p*.log
    local t_synth=$((SECONDS - t0))
    local train_s=$(( BUDGET_S - EXPORT_RESERVE_S - (SECONDS - t0) ))
    [ "$train_s" -ge 1 ] || train_s=1  # (timeout 0 would mean no limit)
    echo "== $((SECONDS - t0)) s: training, at most $train_s s"
    rm -rf "$RUN" "$EXPORT"
    local rc=0
    # shellcheck disable=SC2086 # EXTRA_ARGS is a list of flags
    timeout --signal=INT --kill-after=20 "$train_s" "$PYTHON" -m trainer run --plan "$PLAN" --out "$RUN" \
        --library "$SHARD" --matsynth "$PROC" --init-from models --device "$DEVICE" --force --no-export \
        --res-scale "$RES_SCALE" --epochs-scale "$EPOCHS_SCALE" --max-steps "$MAX_STEPS" \
        --batch-size "$BATCH_SIZE" --num-workers "$NUM_WORKERS" --val-batches "$VAL_BATCHES" \
        --lr-scale "$LR_SCALE" $EXTRA_ARGS || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 130 ] || [ "$rc" -eq 137 ]; then
        echo "== training stopped at its time limit (status $rc); exporting the latest finished job"
    elif [ "$rc" -ne 0 ]; then
        echo "== training failed (status $rc); exporting what finished, if anything"
    fi
    local t_train=$((SECONDS - t0 - t_synth)) t_export=$SECONDS
    echo "== $((SECONDS - t0)) s: export"
    local export_s=$(( HARD_LIMIT_S - PACK_RESERVE_S - (SECONDS - t0) )) xrc=0
    [ "$export_s" -ge 1 ] || export_s=1
    timeout --kill-after=10 "$export_s" "$PYTHON" -m trainer export --run "$RUN" --out "$EXPORT" || xrc=$?
    if [ "$xrc" -ne 0 ]; then
        # No ONNX set in time (or the export failed): bring back the weights, exportable here with
        # `python -m trainer export --run DIR/export --out models/` (docs/gpu.md).
        echo "== export failed or ran out of time (status $xrc); packing the checkpoint as export/trainable only"
        rm -rf "$EXPORT" && mkdir -p "$EXPORT"
        "$PYTHON" -c "import sys; from pathlib import Path; from trainer.checkpoint import resolve_checkpoint, write_trainable; write_trainable(resolve_checkpoint(sys.argv[1]), Path(sys.argv[2]))" \
            "$RUN" "$EXPORT" || { echo "error: no finished checkpoint to bring back"; return 1; }
    fi
    echo "== $((SECONDS - t0)) s: evaluation skipped: the shard has no held-out materials (evaluate after unpacking, docs/gpu.md)"
    local stage=$WORK/stage
    rm -rf "$stage" && mkdir -p "$stage/run"
    cp -r "$EXPORT" "$stage/export"
    (cd "$RUN" && find . -name '*.json' -not -path './synthetic/*' -size -2M -print0 | xargs -0 -r cp --parents -t "$stage/run")
    [ -d "$RUN/tb" ] && [ "$(du -sm "$RUN/tb" | cut -f1)" -le 6 ] && cp -r "$RUN/tb" "$stage/run/tb"
    cp "$PROC"/p*.log "$stage/run/" 2>/dev/null
    # Where, on what and how long: the settings, each step's seconds and the shard's packing record.
    T_SYNTH=$t_synth T_TRAIN=$t_train T_EXPORT=$((SECONDS - t_export)) TRAIN_RC=$rc TRAIN_LIMIT=$train_s EXPORT_RC=$xrc \
        "$PYTHON" - "$SHARD/index.json" "$stage/run/gpu_session.json" <<'EOF' || true
import json, os, platform, subprocess, sys
def smi():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as exc:  # noqa: BLE001 - no GPU (the CPU smoke test)
        return f"unavailable ({exc})"
keys = ("DEVICE", "PLAN", "BUDGET_S", "EXPORT_RESERVE_S", "HARD_LIMIT_S", "SYNTH_COUNT", "SYNTH_SIZE", "SYNTH_JOBS", "RES_SCALE",
        "EPOCHS_SCALE", "MAX_STEPS", "BATCH_SIZE", "NUM_WORKERS", "VAL_BATCHES", "LR_SCALE", "EXTRA_ARGS", "SHARD")
record = {"host": platform.node(), "cpu_count": os.cpu_count(), "gpu": smi(),
          "settings": {k: os.environ.get(k) for k in keys},
          "seconds": {"checks_and_synth": int(os.environ["T_SYNTH"]), "train": int(os.environ["T_TRAIN"]),
                      "export": int(os.environ["T_EXPORT"])},
          "train_limit_s": int(os.environ["TRAIN_LIMIT"]), "train_status": int(os.environ["TRAIN_RC"]),
          "export_status": int(os.environ["EXPORT_RC"]),
          "shard_packed": json.load(open(sys.argv[1])).get("packed")}
json.dump(record, open(sys.argv[2], "w"), indent=1)
print("session:", json.dumps(record["seconds"]), "gpu:", record["gpu"])
EOF
    rm -f "$OUT"/pbr_gpu_result.tar.gz.part-*
    tar -C "$stage" -czf - export run | split -b 15M - "$OUT/pbr_gpu_result.tar.gz.part-" || return 1
    ls -l "$OUT"
    echo "== $((SECONDS - t0)) s: done (training status $rc, export status $xrc). Unpack: cat OUT/pbr_gpu_result.tar.gz.part-* | tar -xzf - -C DIR"
    [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || [ "$rc" -eq 130 ] || [ "$rc" -eq 137 ]
}

main 2>&1 | tee "$OUT/log.txt"
