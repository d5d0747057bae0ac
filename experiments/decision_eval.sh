#!/usr/bin/env bash
# Accept/reject decisions against the humans, read by scoring P(accept) (no generation), on every
# record: the threshold is chosen on ReDial valid (metrics' best_threshold) and applied to ReDial
# test and INSPIRED dev, and stored in a usersim checkpoint ('interplay evaluate calibrate').
# Resumable; finished evaluations are skipped.
#
#   OUT=runs/decisions USERSIM=runs/ckpt/usersim [LIMIT=N] bash experiments/decision_eval.sh [AGENT ...]
#
# AGENT is an agent spec (its kind names the folders: usersim-redial-test, ...) or LABEL=SPEC to
# name them otherwise (a recipe variant: usersim-cf=usersim:runs/ckpt/usersim-cf).
set -euo pipefail
OUT=${OUT:-runs/decisions}
REDIAL=${REDIAL:-data/redial}
INSPIRED=${INSPIRED:-data/inspired}
USERSIM=${USERSIM:-runs/ckpt/usersim}
IP=${IP:-interplay}
AGENTS=("$@")
[ ${#AGENTS[@]} -gt 0 ] || AGENTS=(zero-shot "usersim:$USERSIM")

run() {  # run NAME ARGS...
  local name=$1; shift
  if [ -f "$OUT/$name/metrics.json" ]; then echo "done: $name"; return; fi
  echo "== $name ($(date +%H:%M:%S))"
  $IP evaluate user --out "$OUT/$name" --resume --no-progress --parts human --decision score ${LIMIT:+--limit $LIMIT} "$@"
}

threshold() {  # the best threshold on valid, from its metrics.json
  python - "$1" <<'PY'
import json, sys
print(json.load(open(sys.argv[1]))["human_view"].get("best_threshold") or 0.5)
PY
}

for arg in "${AGENTS[@]}"; do
  if [[ $arg == *=* ]]; then name=${arg%%=*}; agent=${arg#*=}; else agent=$arg; name=${agent%%:*}; fi
  run "$name-redial-valid" --agent "$agent" --data "$REDIAL" --split valid
  t=$(threshold "$OUT/$name-redial-valid/metrics.json")
  # a UserSim checkpoint keeps the threshold: its episodes and replays then decide by it
  [[ $agent == usersim:* ]] && $IP evaluate calibrate "$OUT/$name-redial-valid"
  run "$name-redial-test" --agent "$agent" --data "$REDIAL" --split test --accept-threshold "$t"
  run "$name-inspired-dev" --agent "$agent" --data "$INSPIRED" --split dev --accept-threshold "$t"
done
