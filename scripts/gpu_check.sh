#!/usr/bin/env bash
# The GPU checks of lit_gen in one go (< 13 minutes on one GPU), from the repository root after `make install`:
#   bash scripts/gpu_check.sh             # pytest -m gpu, 16-mixed / bf16-mixed fits, the speed benchmark and its
#                                         # precision table (fractions of the device's bf16 matmul limit)
#   bash scripts/gpu_check.sh --dry-run   # print what would run (no GPU needed)
# Prints one markdown table: what ran, status, seconds, key figure. Logs and runs go to $GPU_CHECK_OUT
# (default: runs/gpu_check/<date>). Exit status 1 when any check failed.
set -u -o pipefail

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h | --help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (use --dry-run or --help)" >&2; exit 2 ;;
  esac
done

if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
OUT=${GPU_CHECK_OUT:-runs/gpu_check/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=${WANDB_MODE:-disabled}

ROWS=()
FAILED=0

# run NAME TIMEOUT_S FIGURE_FN COMMAND...: runs COMMAND with a time limit, logs to $OUT/NAME.log, adds a table row.
run() {
  local name=$1 limit=$2 figure_fn=$3
  shift 3
  local log="$OUT/$name.log"
  if [ "$DRY_RUN" = 1 ]; then
    echo "would run (limit ${limit} s): $*"
    ROWS+=("| $name | dry run | - | \`$*\` |")
    return
  fi
  local start status rc figure
  start=$SECONDS
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  if [ $rc = 0 ]; then status=ok; elif [ $rc = 124 ] || [ $rc = 137 ]; then status="TIMEOUT (${limit} s)"; else status="FAIL (rc $rc)"; fi
  figure=$("$figure_fn" "$name" "$log" 2>/dev/null | tr '|\n' '/ ' | cut -c1-110)
  if [ $rc = 0 ] && [[ "$figure" == *nan* || "$figure" == *inf* ]]; then status="FAIL (non-finite)"; fi
  [ "$status" = ok ] || { FAILED=1; figure="$figure; log: $log"; }
  ROWS+=("| $name | $status | $((SECONDS - start)) | ${figure:--} |")
}

# Key figures, read from each check's log or run directory.
pytest_figure() { grep -E "passed|failed|error|skipped" "$2" | tail -1 | sed 's/=//g; s/^ *//'; }
fit_figure() {
  "$PY" - "$OUT/runs/$1" <<'EOF'
import csv, math, sys
from pathlib import Path
rows = [r for f in Path(sys.argv[1]).rglob("metrics.csv") for r in csv.DictReader(open(f))]
keys = ("train/g_loss", "train/d_loss", "train/generator_steps", "train/loss", "val/loss")
last = {k: r[k] for r in rows for k in keys if r.get(k)}
print(", ".join(f"{k} {float(v):.4g}" for k, v in last.items()) or "no metrics written")
EOF
}
precision_figure() {  # per model: the best fraction of the device's bf16 matmul limit, and which variant reached it
  "$PY" - "$OUT/speed-precision/results.json" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))
for kind in ("gan", "vae"):
    rows = results.get(kind, {}).get("precision", {}).get("rows", [])
    if rows:
        r = max(rows, key=lambda r: r["fraction_of_limit"]["bf16"])
        print(f"{kind} {100 * r['fraction_of_limit']['bf16']:.1f}% of bf16 ({r['variant']} b{r['batch_size']})", end="; ")
EOF
}
bench_figure() {  # images/s of lit_gen's bare Trainer and its ratio to the plain loop, per model
  grep -F "lit_gen bare Trainer: training batches" "$OUT/speed/table.md" | awk -F'|' '{print $2 ":" $4 "img/s, x" $5}'
}

run "pytest -m gpu" 110 pytest_figure "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py

# Short fits through the CLI, as users run them: the MNIST GAN with R1 (the penalty's inner gradient under the
# GradScaler is what 16-mixed used to break) and the VAE, compiled and channels-last.
COMMON=(--trainer.accelerator=gpu --trainer.devices=1 --trainer.max_epochs=1 --trainer.limit_val_batches=2
  --trainer.log_every_n_steps=5 --trainer.enable_progress_bar=false --model.compile=true --model.channels_last=true)
for precision in 16-mixed bf16-mixed; do
  run "gan-r1-$precision" 55 fit_figure "$PY" -m lit_gen fit --config configs/gan/mnist.yaml "${COMMON[@]}" \
    --trainer.precision="$precision" --model.r1_gamma=0.1 --model.max_generator_steps=60 \
    --trainer.logger.init_args.save_dir="$OUT/runs/gan-r1-$precision"
  run "vae-$precision" 55 fit_figure "$PY" -m lit_gen fit --config configs/vae/mnist.yaml "${COMMON[@]}" \
    --trainer.precision="$precision" --trainer.max_steps=60 \
    --trainer.logger.init_args.save_dir="$OUT/runs/vae-$precision"
done

# its training section only (the scaling sections start DDP processes and would overrun the 8 minutes)
run "bench_speed --device cuda --quick" 120 bench_figure "$PY" scripts/bench_speed.py --device cuda --quick \
  --sections check train --out "$OUT/speed"

# images/s and GFLOP/s of the shipped GAN and VAE at batch 32 and 128: 32-true, then 16-mixed and bf16-mixed with
# compile and channels-last, as fractions of the device's own fp32 / bf16 / fp16 matmul limits (8192² products)
run "bench_speed precision" 300 precision_figure "$PY" scripts/bench_speed.py --device cuda --sections precision \
  --limit 40 --rounds 2 --out "$OUT/speed-precision"

echo
echo "GPU check, $(date -u +%Y-%m-%dT%H:%MZ), $( (nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi') | head -1), logs in $OUT"
echo
echo "| check | status | s | key figure |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
if [ -f "$OUT/speed-precision/table.md" ]; then echo; cat "$OUT/speed-precision/table.md"; fi
exit $FAILED
