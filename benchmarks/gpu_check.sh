#!/usr/bin/env bash
# One GPU check for whoever is lent a device (issue 12): about 8 minutes on one GPU, everything under
# one folder, a summary file at the end.
#
#   benchmarks/gpu_check.sh OUT_DIR                    # on the GPU machine (or set $OUT)
#   benchmarks/gpu_check.sh --dry-run OUT_DIR          # the same steps on the CPU at toy sizes (CI)
#   CPU_DRY_RUN=1 benchmarks/gpu_check.sh OUT_DIR      # the same
#
# Options (each also as an environment variable): --model M (MODEL; card or checkpoint folder,
# default smollm2-135m-ee), --data-dir D (DATA_DIR; default ../shared/data when it exists),
# --task T (TASK; default wmt22_de_en), --include-path P (INCLUDE_PATH; extra task YAMLs),
# --draft-layers "11,17" (DRAFT_LAYERS; 0-based E of speculative / HF assistant),
# --sparse-exit-layers "11,17,23" (SPARSE_LAYERS; copy/recompute exits in the side-by-side),
# --main-exit-layer 17 (MAIN_EXIT_LAYER; the one exit layer of the main run, shared by copy,
# recompute and speculative, which drafts with blocks 0..E), --python PY (PYTHON; default: python3).
#
# Steps (each logged to its own file; a failed step is recorded and the next one still runs):
#   1. analysis_cost.txt   benchmarks/analysis_cost.py in bfloat16 (the all-layer analysis vs one forward)
#   2. main/ + main.log    ee-bench on 20 documents with --kv copy,recompute,speculative (results JSON,
#                          samples, leaderboard.md)
#   3. peers/ + peers.log  benchmarks/peers.py: full depth, HF generate (plain and assistant_early_exit),
#                          speculative, copy, recompute, side by side
#   then env.txt (versions, nvidia-smi) and summary.md (per step: command, exit code, seconds, key lines).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DRY="${CPU_DRY_RUN:-0}"
MODEL="${MODEL:-smollm2-135m-ee}"
DATA_DIR="${DATA_DIR:-}"
TASK="${TASK:-wmt22_de_en}"
INCLUDE_PATH="${INCLUDE_PATH:-}"
DRAFT_LAYERS="${DRAFT_LAYERS:-11,17}"
SPARSE_LAYERS="${SPARSE_LAYERS:-11,17,23}"
MAIN_EXIT_LAYER="${MAIN_EXIT_LAYER:-17}"
PYTHON="${PYTHON:-python3}"
OUT_DIR="${OUT:-}"

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --model) MODEL="$2"; shift ;;
    --data-dir) DATA_DIR="$2"; shift ;;
    --task) TASK="$2"; shift ;;
    --include-path) INCLUDE_PATH="$2"; shift ;;
    --draft-layers) DRAFT_LAYERS="$2"; shift ;;
    --sparse-exit-layers) SPARSE_LAYERS="$2"; shift ;;
    --main-exit-layer) MAIN_EXIT_LAYER="$2"; shift ;;
    --python) PYTHON="$2"; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) OUT_DIR="$1" ;;
  esac
  shift
done
if [ -z "$OUT_DIR" ]; then
  echo "gpu_check.sh: give the output folder as an argument or in \$OUT (e.g. benchmarks/gpu_check.sh runs/gpu_check)" >&2
  exit 2
fi
if [ -z "$DATA_DIR" ] && [ -d "$ROOT/../shared/data" ]; then DATA_DIR="$ROOT/../shared/data"; fi
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DRY" = "1" ]; then  # same steps, CPU, toy sizes
  DEVICE=cpu; THREADS=1; export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  AC_ARGS=(--seq-len 16 --repeats 1 --threads 1)
  LIMIT=1; SPEEDUP_REPEATS=1
  PEERS_ARGS=(--n-docs 1 --max-gen-toks 4 --repeats 1 --threads 1)
else
  DEVICE=cuda; THREADS=4
  AC_ARGS=(--seq-len 256 --repeats 5)
  # sized from CPU estimates (not yet timed on a GPU): the per-token Python loop, ~10-20 ms a token,
  # dominates; main: 20 docs x <=128 tokens x 4 modes x (warm-up + 1 round); peers: 10 x 32 x 8 x 3
  LIMIT=20; SPEEDUP_REPEATS=1
  PEERS_ARGS=(--n-docs 10 --max-gen-toks 32 --repeats 2 --threads "$THREADS")
fi
TASK_ARGS=(); [ -n "$INCLUDE_PATH" ] && TASK_ARGS+=(--include_path "$INCLUDE_PATH")
DATA_ARGS=(); [ -n "$DATA_DIR" ] && DATA_ARGS+=(--data-dir "$DATA_DIR")
PEERS_TASK=(--task "$TASK"); [ -n "$INCLUDE_PATH" ] && PEERS_TASK+=(--include-path "$INCLUDE_PATH")

SUMMARY="$OUT_DIR/summary.md"
STEPS_TSV="$OUT_DIR/.steps.tsv"
: > "$STEPS_TSV"
T_ALL=$(date +%s)

step() {  # step NAME LOGFILE CMD...
  local name="$1" log="$2"; shift 2
  local t0 rc
  t0=$(date +%s)
  echo "== $name: $*" | tee "$log"
  "$@" >> "$log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$*" >> "$STEPS_TSV"
  echo "== $name: exit $rc ($(( $(date +%s) - t0 )) s), log $log"
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "mode: $([ "$DRY" = "1" ] && echo 'CPU dry run (toy sizes)' || echo GPU)"
  echo "git: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  "$PYTHON" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); print('transformers', transformers.__version__)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
} > "$OUT_DIR/env.txt" 2>&1

step analysis_cost "$OUT_DIR/analysis_cost.txt" \
  "$PYTHON" "$ROOT/benchmarks/analysis_cost.py" --model "$MODEL" --device "$DEVICE" --dtype bfloat16 "${AC_ARGS[@]}"

step main "$OUT_DIR/main.log" \
  "$PYTHON" -m ee_bench.cli --model "$MODEL" --tasks "$TASK" "${TASK_ARGS[@]}" --limit "$LIMIT" "${DATA_ARGS[@]}" \
  --device "$DEVICE" --kv copy,recompute,speculative --exit-layers "$MAIN_EXIT_LAYER" \
  --speedup-repeats "$SPEEDUP_REPEATS" --output_path "$OUT_DIR/main" --no-progress

step peers "$OUT_DIR/peers.log" \
  "$PYTHON" "$ROOT/benchmarks/peers.py" --model "$MODEL" "${PEERS_TASK[@]}" "${DATA_ARGS[@]}" --device "$DEVICE" \
  --draft-layers "$DRAFT_LAYERS" --sparse-exit-layers "$SPARSE_LAYERS" --draft-lens 4,adaptive,adaptive+gate "${PEERS_ARGS[@]}" --out "$OUT_DIR/peers"

TOTAL=$(( $(date +%s) - T_ALL ))
FAILED=0
{
  echo "# ee-bench GPU check"
  echo
  echo "Folder: \`$OUT_DIR\`; total $TOTAL s ($([ "$TOTAL" -le 480 ] && echo 'within' || echo 'OVER') the 8-minute budget)."
  echo
  sed 's/^/    /' "$OUT_DIR/env.txt"
  echo
  echo "| step | exit | seconds | command |"
  echo "|---|---|---|---|"
  while IFS=$'\t' read -r name rc secs cmd; do
    echo "| $name | $rc | $secs | \`$cmd\` |"
  done < "$STEPS_TSV"
  echo
  echo "## analysis cost (bfloat16)"
  grep -E '^(model=|TIME|MEMORY)' "$OUT_DIR/analysis_cost.txt" | sed 's/^/    /'
  echo
  echo "## main run (measured speed-up, per strategy)"
  sed -n '/^measured speed-up/,/^## /p' "$OUT_DIR/main.log" | grep -v '^## ' | sed 's/^/    /'
  echo
  echo "## side by side"
  if [ -f "$OUT_DIR/peers/peers.txt" ]; then sed 's/^/    /' "$OUT_DIR/peers/peers.txt"; else echo "(no printout: see peers.log)"; fi
} > "$SUMMARY"
while IFS=$'\t' read -r name rc secs cmd; do [ "$rc" = "0" ] || FAILED=1; done < "$STEPS_TSV"
rm -f "$STEPS_TSV"
echo "summary: $SUMMARY ($TOTAL s)"
exit $FAILED
