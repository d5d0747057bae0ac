#!/usr/bin/env bash
# Downstream utility of user simulators (docs/fidelity.md): for each user agent X, simulate N
# episodes on ReDial train against one fixed recommender, build them into training records, train
# a RecSim on them (the same recipe for every X), and evaluate it on held-out human dialogues
# (ReDial test, recommendations forced at the recorded turns: MatchScore, Recall@1, Recall@10).
# A RecSim trained on as many *real* ReDial train dialogues is the reference row. Every stage is
# skipped when its output exists and resumes when interrupted; stages run one after another.
#
#   N=60 LIMIT=80 bash experiments/downstream_utility.sh rule=rule zero-shot=zero-shot \
#       usersim=usersim:runs/ckpt/usersim-matchdec
#
# then: interplay evaluate fidelity ... --downstream runs/downstream/eval-real \
#       --downstream runs/downstream/eval-rule ...   (or --downstream for each folder printed at the end)
set -euo pipefail
N=${N:-60}                           # simulated episodes per user agent
LIMIT=${LIMIT:-80}                   # ReDial test records evaluated (all: LIMIT=300)
REC=${REC:-retrieval:data/redial}    # the recommender every user agent talks with
DATA=${DATA:-data/redial}
OUT=${OUT:-runs/downstream}
CKPTS=${CKPTS:-runs/ckpt}
IP=${IP:-interplay}
TRAIN_ARGS=(--role recommender --epochs 1 --grad-accum 2 --save-steps 8 --resume --report-to none)
EVAL_ARGS=(--data "$DATA" --split test --limit "$LIMIT" --rank-items 10 --rank-beam 10 --resume --no-progress)

train_and_eval() {  # LABEL DATA_DIR [train args...]
  local label=$1 data=$2; shift 2
  local ckpt="$CKPTS/recsim-down-$label"
  if [ ! -f "$ckpt/interplay_training.json" ]; then
    echo "== train $label ($(date +%H:%M:%S))"
    $IP train --data "$data" --out "$ckpt" "${TRAIN_ARGS[@]}" "$@"
  fi
  if [ ! -f "$OUT/eval-$label/metrics.json" ]; then
    echo "== evaluate $label ($(date +%H:%M:%S))"
    $IP evaluate recommender --agent "recsim:$ckpt" --out "$OUT/eval-$label" "${EVAL_ARGS[@]}"
  fi
  FOLDERS+=("$OUT/eval-$label")
}

FOLDERS=()
sizes=()
for arg in "$@"; do
  label=${arg%%=*}; user=${arg#*=}
  run="$OUT/sim-$label"; data="data/downstream-$label"
  if [ ! -f "$run/summary.json" ]; then
    echo "== simulate $label: $user with $REC ($(date +%H:%M:%S))"
    $IP simulate --data "$DATA" --split train --user "$user" --recommender "$REC" --episodes "$N" \
      --max-turns 10 --out "$run" --resume --no-progress
  fi
  [ -f "$data/train.jsonl" ] || $IP data build --source episodes --path "$run" --out "$data" --skip-invalid --no-progress
  sizes+=("$(wc -l < "$data/train.jsonl")")
  train_and_eval "$label" "$data"
done
# the reference: as many real dialogues as the smallest simulated corpus
real=$(printf '%s\n' "${sizes[@]:-$N}" | sort -n | head -1)
train_and_eval "real-$real" "$DATA" --max-train-records "$real"
printf -- '--downstream %s ' "${FOLDERS[@]}"; echo
