#!/usr/bin/env bash
# The decision yardstick of docs/fidelity.md, end to end and resumable (rerun after an interruption;
# finished evaluations are skipped): each LLM user agent's threshold chosen on ReDial valid (scored
# decisions), then the fidelity scorecard on ReDial test and INSPIRED dev for the rule user, the
# yes-sayer (rule:0) and every agent given, then the docs result files and the docs' tables.
#
#   bash experiments/yardstick.sh zero-shot usersim:runs/ckpt/usersim-matchdec usersim-nomatch:runs/ckpt/usersim-matchdec
#
# On a slow machine run the parts in passes (PARTS=human,probe first, then PARTS=replay ...): an
# agent folder keeps every part it ran, and each pass rewrites the scorecard and the result files.
# SETS=redial or SETS=inspired runs one data set only. NOTE adds a sentence to the result files.
#
# Needs data/redial and data/inspired (interplay data build ...). One heavy job at a time.
set -euo pipefail
IP=${IP:-interplay}
OUT=${OUT:-runs/fidelity}
CAL=${CAL:-runs/decisions}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

users=(--user rule --user rule:0)
thresholds=(--accept-threshold 0.5 --accept-threshold 0.5)
for agent in "$@"; do
  name=$(echo "$agent" | tr ':/' '--')
  valid="$CAL/$name-redial-valid"
  if [ ! -f "$valid/metrics.json" ]; then
    echo "== threshold of $agent on ReDial valid ($(date +%H:%M:%S))"
    $IP evaluate user --agent "$agent" --data data/redial --split valid --parts human --decision score \
      --out "$valid" --resume --no-progress
  fi
  t=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['human_view'].get('best_threshold') or 0.5)" \
      "$valid/metrics.json")
  users+=(--user "$agent"); thresholds+=(--accept-threshold "$t")
done

for set in "redial test redial-test" "inspired dev inspired-dev"; do
  read -r data split name <<< "$set"
  [[ -z ${SETS:-} || $SETS == *$data* ]] || continue
  cmd="$IP evaluate fidelity --data data/$data --split $split --out $OUT/$name ${users[*]} ${thresholds[*]}${PARTS:+ --parts $PARTS}"
  echo "== $cmd ($(date +%H:%M:%S))"
  $cmd --no-progress
  $IP docs from-scorecard "$OUT/$name" --name "fidelity-$name" --command "$cmd" ${NOTE:+--note "$NOTE"}
done
$IP docs render
