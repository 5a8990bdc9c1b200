#!/usr/bin/env bash
# One lent-GPU session in a single command, in the order of what matters most:
#   1. (BENCH=1) the CUDA benchmark (benchmarks/bench.py --device cuda) -> $OUT/performance-cuda.md
#   2. (RUN_TESTS=1) the test suite's CUDA-touching files on the GPU machine, in the background
#   3. colouriser training that fills the time left: the RUNS side by side (the GPU is far from
#      busy with one 64x64 U-Net), each planned from a short probe of its step rates so that the
#      lr decay and the adversarial phase finish before the deadline
#   4. the EMA generators exported (fp16) and the logs packed into $OUT
#
# RUNS: space-separated NAME:WIDTH:PIXEL_LOSS[:INIT_WEIGHTS], e.g.
#   "a:32:l1:colorsr_cli/weights/colorsr-color-v3.pt b:48:l1" (b from random weights).
# Photos are decoded once into memory (the trainer's --cache): the first lease measured the
# loaders, decoding JPEGs, as the limit (~3,100 images/s with 6 processes).
#
# Usage (device machine, repo root), with the photos packed here by tools/pack_gpu_data.py:
#   mkdir -p /tmp/data && tar -xJf .gpudata/data.tar.xz -C /tmp/data &&
#   BUDGET=540 DATA=/tmp/data/train VAL=/tmp/data/val bash tools/gpu_session.sh
# (the device machine has no shared data; .gpudata travels via run's carry)
set -u
OUT=${OUT:-/tmp/gpu_out}
BUDGET=${BUDGET:-540}          # seconds from start until everything is in $OUT
DATA=${DATA:-.gpudata/train}
VAL=${VAL:-}                   # validation folder; empty = the trainer holds out 2 % of DATA
RUNS=${RUNS:-"w32:32:l1 w48:48:l1"}
BATCH=${BATCH:-64}
DEVICE=${DEVICE:-cuda}
BENCH_ARGS=${BENCH_ARGS:-"--no-compile --seconds 0.6"}
NRUNS=$(echo "$RUNS" | wc -w)
# data-loading processes per run: the cores left after one main process per run
WORKERS=${WORKERS:-$(( ($(nproc) - NRUNS) / NRUNS ))}
START=$(date +%s)
LOGS=/tmp/gpu_logs
mkdir -p "$OUT" "$LOGS"
export PYTHONUNBUFFERED=1
left() { echo $((BUDGET - ($(date +%s) - START))); }
say() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$LOGS/session.log"; }
spec() { IFS=: read -r n w l i <<<"$1"; echo "$n $w $l ${i:-}"; }  # NAME:WIDTH:LOSS[:INIT] -> words

if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >"$LOGS/gpu.txt" 2>&1
python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')" >>"$LOGS/gpu.txt" 2>&1
nproc >>"$LOGS/gpu.txt"
say "$(tr '\n' ' ' <"$LOGS/gpu.txt")"

if [ "${BENCH:-1}" = 1 ]; then
    say "bench"
    # shellcheck disable=SC2086
    timeout 200 python3 benchmarks/bench.py --device "$DEVICE" $BENCH_ARGS --out "$OUT/performance-cuda.md" \
        >"$LOGS/bench.log" 2>&1
    say "bench rc=$? ($(left)s left)"
fi

TESTS=0
if [ "${RUN_TESTS:-0}" = 1 ]; then
    # Off by default: run beside the training they starved its data loaders (the first lent
    # session measured half the step rate in the probe, with the tests running, than after).
    say "tests (background)"
    timeout 150 python3 -m pytest -q -n "${TEST_PROCS:-4}" -p no:cacheprovider tests/test_pipeline.py \
        tests/test_cli.py tests/test_train.py >"$LOGS/pytest.log" 2>&1 &
    TESTS=$!
fi

train() {  # seconds name width pixel_loss init max_steps pretrain_steps val_every checkpoint_every
    # Through the Python API (the same ColorRecipe as `colorsr train color`), so the command
    # depends on no CLI package versions of the device image.
    timeout "$1" python3 - "$@" >"$LOGS/train-$2.log" 2>&1 <<EOF
import sys
from colorsr_cli.train.color import ColorRecipe, train_color
from colorsr_cli.train.common import Reporter
_, _, name, width, loss, init, steps, pre, val_every, ckpt_every = sys.argv
train_color(ColorRecipe(data="$DATA", val="$VAL" or None, out=f"/tmp/runs/{name}", width=int(width),
                        depth=4, pixel_loss=loss, init_weights=init or None, cache_photos=True,
                        batch_size=$BATCH, epochs=100000, max_steps=int(steps),
                        pretrain_steps=int(pre), disc_sigmoid=False, adv_weight=0.1, ema=0.999,
                        lr_decay_start=0.6, val_every=int(val_every),
                        checkpoint_every=int(ckpt_every), device="$DEVICE", workers=$WORKERS, threads=2),
            reporter=Reporter(on_event=print))
print("finished", name)
EOF
}

say "probes"
for item in $RUNS; do
    read -r n w l i < <(spec "$item")
    train "${PROBE_SECONDS:-150}" "probe-$n" "$w" "$l" "$i" 400 200 400 100000 &
done
wait $(jobs -p | grep -v "^$TESTS$") 2>/dev/null
# steps/s of each phase from the probe's metrics (steps 100-200: L1, 300-400: adversarial; the
# first steps of each phase include worker start-up and cuDNN's algorithm search)
rate() {
    python3 - "$1" <<'EOF'
import json, sys
t = {r["step"]: r["time"] for r in map(json.loads, open(sys.argv[1])) if "img_per_s" in r}
print(f"{100 / (t[200] - t[100]):.3f} {100 / (t[400] - t[300]):.3f}")
EOF
}
PLAN=""
for item in $RUNS; do
    read -r n w l i < <(spec "$item")
    read -r l1 gan < <(rate "/tmp/runs/probe-$n/metrics.jsonl") || { say "probe $n failed"; continue; }
    # main run: everything left but 60 s (start-up, export, packing), 3/4 L1 steps, 1/4 adversarial
    secs=$(($(left) - 60))
    steps=$(python3 -c "print(int(0.9 * $secs / (0.75 / $l1 + 0.25 / $gan)))")
    say "$n (width $w, $l, init ${i:-none}): $l1 L1 steps/s, $gan adversarial steps/s -> $steps steps in ${secs}s"
    [ "$steps" -gt 0 ] && PLAN="$PLAN $item=$steps"
done
for item in $PLAN; do
    read -r n w l i < <(spec "${item%=*}")
    steps=${item##*=}
    train $(($(left) - 35)) "$n" "$w" "$l" "$i" "$steps" $((steps * 3 / 4)) "${VAL_EVERY:-2000}" 2000 &
done
wait $(jobs -p | grep -v "^$TESTS$") 2>/dev/null
say "training done ($(left)s left)"
if [ "$TESTS" != 0 ]; then
    wait "$TESTS" 2>/dev/null
    say "tests: $(tail -1 "$LOGS/pytest.log")"
fi

for item in $PLAN; do
    read -r n _ < <(spec "${item%=*}")
    run=/tmp/runs/$n
    rm -f "/tmp/$n.pt"
    python3 -c "from pathlib import Path; from colorsr_cli.export import export_run; \
print(export_run(Path('$run'), Path('/tmp/$n.pt'), 'gpu-$n', checkpoint=Path('$run/last.pt')))" \
        >>"$LOGS/export.log" 2>&1 || say "export $n failed"
    mkdir -p "$LOGS/$n"
    cp "$run"/*.json "$run/metrics.jsonl" "$LOGS/$n/" 2>/dev/null
    cp "$(ls "$run"/samples/*.png | tail -1)" "$LOGS/$n/" 2>/dev/null
    if [ -f "/tmp/$n.pt" ]; then
        # files come back at most 16 MiB each
        split -b 15M -d "/tmp/$n.pt" "$OUT/$n.pt.part"
    fi
done
for item in $RUNS; do
    read -r n _ < <(spec "$item")
    cp "/tmp/runs/probe-$n/metrics.jsonl" "$LOGS/probe-$n.jsonl" 2>/dev/null
done
tar -czf "$OUT/logs.tar.gz" -C /tmp gpu_logs
say "done ($(left)s left)"
ls -la "$OUT"
