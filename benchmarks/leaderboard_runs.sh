#!/usr/bin/env bash
# The runs behind the committed leaderboard (issue 15): every row at 200 documents, or the whole test
# set where it is smaller, each in its own output folder so that an interrupted run resumes from its
# record cache (docs/reliability.md). Prints and records the wall time of each run; then copies the
# results (not the caches) into leaderboard/results/<model>/ and regenerates the leaderboard and report.
#
# Usage: benchmarks/leaderboard_runs.sh [--jobs N] [--data-dir DIR] [--only REGEX] [--no-publish]
#   --jobs N      runs at once (default 1). Each run gets (cores / N) threads: on a CPU, two single-
#                 threaded runs kept both cores of a 2-core machine busy where one run did not.
#   --only REGEX  run only the lines of the list below that match (e.g. --only 'wmt22_(en_ja|en_zh)').
#   --no-publish  run only; do not copy results or regenerate leaderboard/README.md.
#   --dry-run     print the commands and exit.
#
# The joint-optimised row needs the checkpoint of the decoder joint-optimisation demonstration
# (docs/joint_decoders.md); its finetune command is in leaderboard/decoder_joint/training/joint.json.
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=1 DATA_DIR=../shared/data ONLY=. PUBLISH=1 LIMIT=200 DRY=0
need_value() { [ $# -ge 2 ] || { echo "leaderboard_runs.sh: $1 needs a value (see --help)" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case $1 in
    --jobs) need_value "$@"; JOBS=$2; shift 2;;
    --data-dir) need_value "$@"; DATA_DIR=$2; shift 2;;
    --only) need_value "$@"; ONLY=$2; shift 2;;
    --no-publish) PUBLISH=0; shift;;
    --dry-run) DRY=1; shift;;
    -h|--help) sed -n 2,17p "$0"; exit 0;;
    *) echo "leaderboard_runs.sh: unknown option $1 (see --help)" >&2; exit 2;;
  esac
done
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "leaderboard_runs.sh: --jobs $JOBS: give a whole number >= 1" >&2; exit 2; }
EE=${EE:-.venv/bin/ee-bench}
JOINT=runs/decoder_joint_demo/ckpt/smollm2-135m-ee-wmt14-joint
OUT=runs/leaderboard

# model (card or checkpoint folder)  task  (the main command's --limit: 200, or the whole set when smaller)
LIST=$(cat <<EOF
smollm2-135m-ee wmt22_de_en
smollm2-135m-ee wmt22_en_de
smollm2-135m-ee wmt22_en_ja
smollm2-135m-ee wmt22_en_ru
smollm2-135m-ee wmt22_en_zh
smollm2-135m-ee wmt22_fr_de
smollm2-135m-ee wmt22_ja_en
smollm2-135m-ee wmt22_zh_en
smollm2-135m-ee wmt14_en_de
smollm2-135m-ee iwslt14_de_en
smollm2-135m-ee cnn_dailymail
smollm2-135m-ee narrativeqa
smollm2-135m-ee glue_sst2
smollm2-135m-ee glue_mrpc
smollm2-135m-ee glue_rte
smollm2-135m-ee glue_cola
gemma3-270m-ee wmt22_de_en
$JOINT wmt22_de_en
EOF
)
LIST=$(grep -E -- "$ONLY" <<<"$LIST" || true)
[ -n "$LIST" ] || { echo "leaderboard_runs.sh: no run matches --only $ONLY" >&2; exit 2; }
if [ "$DRY" -eq 1 ]; then
  while read -r model task; do
    echo "$EE --model $model --tasks $task --gate confidence --limit $LIMIT --batch_size 8 --data-dir $DATA_DIR --output_path $OUT/$(basename "$model")__$task --no-progress"
  done <<<"$LIST"
  exit 0
fi
if grep -q "^$JOINT " <<<"$LIST" && [ ! -d "$JOINT" ]; then
  echo "leaderboard_runs.sh: $JOINT is missing; train it first (command in leaderboard/decoder_joint/training/joint.json)," >&2
  echo "  or leave its row out with --only." >&2
  exit 2
fi
THREADS=$(( $(nproc) / JOBS )); [ "$THREADS" -ge 1 ] || THREADS=1
mkdir -p "$OUT"

run_one() {  # $1 model, $2 task
  local name out start rc
  name=$(basename "$1"); out="$OUT/${name}__$2"
  start=$(date +%s)
  OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS "$EE" --model "$1" --tasks "$2" --gate confidence \
    --limit "$LIMIT" --batch_size 8 --data-dir "$DATA_DIR" --output_path "$out" --no-progress \
    >"$out.log" 2>&1 && rc=0 || rc=$?
  printf '%s\t%s\t%s\t%d\t%d\n' "$(date -u +%FT%TZ)" "$name" "$2" "$rc" "$(( $(date +%s) - start ))" \
    | tee -a "$OUT/wall_times.tsv"
  return "$rc"
}
export -f run_one
export OUT EE LIMIT DATA_DIR THREADS

echo "$(wc -l <<<"$LIST") runs, $JOBS at a time, $THREADS thread(s) each; wall times in $OUT/wall_times.tsv"
status=0
xargs -P "$JOBS" -L 1 bash -c 'run_one "$0" "$1"' <<<"$LIST" || status=$?
[ "$status" -eq 0 ] || { echo "leaderboard_runs.sh: a run failed; see $OUT/*.log (rerun to resume)" >&2; exit 1; }
[ "$PUBLISH" -eq 1 ] || exit 0

while read -r model task; do
  name=$(basename "$model")
  mkdir -p "leaderboard/results/$name"
  cp "$OUT/${name}__$task/$name/"*"_${task}_confidence."* "leaderboard/results/$name/"
done <<<"$LIST"
"$EE" leaderboard
"$EE" report leaderboard/
