#!/usr/bin/env bash
# The simulators' learning curve (issue 35): the shipped recipe (experiments/train_simulators.sh)
# on 1,500 and on all 4,001 ReDial train dialogues (data/redial-all), against the shipped 500.
# Resumable and one heavy job at a time: rerun after an interruption; finished stages and
# evaluations are skipped.
#
#   bash experiments/learning_curve.sh              # SIZES="1500 0" (0: all)
#   SIZES=1500 bash experiments/learning_curve.sh
#
# CPU budget (2 cores, bf16, docs/simulators.md): the whole-dialogue stage of the UserSim stays the
# shipped 500-dialogue adapter (copied from BASE) and every size continues it with the decision
# stage on its own data; the RecSim trains on each size. Measured here: the decision stage ~14 s
# per step of 8 records, ~2 examples per record (1,500: ~1.5 h; 4,001: ~4 h), the RecSim ~10 s per
# step (1,500: ~35 min; 4,001: ~1.5 h): about 7.5 h for both sizes, within the issue's 12.
# Then per size: the UserSim's threshold on ReDial valid, its decisions per slice on ReDial test
# (the fidelity scorecard's human part, beside every agent already there), the RecSim's forced
# recommendations on ReDial test (MatchScore, Recall@1).
set -euo pipefail
IP=${IP:-interplay}
DATA=${DATA:-data/redial-all}
SIZES=${SIZES:-"1500 0"}
BASE=${BASE:-runs/simulators}
FID=${FID:-runs/fidelity/redial-test}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

[ -f "$DATA/train.jsonl" ] || { echo "$DATA: build it first (docs/data.md: data/redial-all)" >&2; exit 2; }
[ -f "$BASE/usersim-dialogues/interplay_training.json" ] || { echo "$BASE/usersim-dialogues: train the shipped recipe first (make simulators)" >&2; exit 2; }

threshold() {  # threshold SPEC FOLDER: the best balanced-accuracy cut on ReDial valid
  local valid=runs/decisions/$(echo "$1" | tr ':/' '--')-redial-valid
  [ -f "$valid/metrics.json" ] || $IP evaluate user --agent "$1" --data data/redial --split valid --parts human \
    --decision score --out "$valid" --resume --no-progress
  python -c "import json,sys; print(json.load(open(sys.argv[1]))['human_view'].get('best_threshold') or 0.5)" \
    "$valid/metrics.json"
}

users=(); cuts=()
for n in $SIZES; do
  out=runs/curve-$([ "$n" = 0 ] && echo all || echo "$n")
  mkdir -p "$out"
  [ -d "$out/usersim-dialogues" ] || cp -r "$BASE/usersim-dialogues" "$out/usersim-dialogues"
  echo "== $out: training ($(date +%H:%M:%S))"
  DATA=$DATA RECORDS=$n OUT=$out SHIP=0 REJECTIONS=${REJECTIONS:-templates} bash experiments/train_simulators.sh usersim recsim
  echo "== $out: RecSim on ReDial test ($(date +%H:%M:%S))"
  [ -f "$out/recsim-redial-test/metrics.json" ] || $IP evaluate recommender --agent "recsim:$out/recsim" \
    --data data/redial --split test --out "$out/recsim-redial-test" --resume --no-progress
  users+=(--user "usersim:$out/usersim"); cuts+=(--accept-threshold "$(threshold "usersim:$out/usersim")")
done

# the scorecard's human part for the curve, beside the agents the folder already judged (their
# folders keep every part they ran; nothing of theirs is rerun)
held=(--user rule --user rule:0 --user zero-shot --user usersim:runs/ckpt/usersim-matchdec
      --user usersim-nomatch:runs/ckpt/usersim-matchdec --user usersim:interplay/simulators/usersim)
held_cuts=(--accept-threshold 0.5 --accept-threshold 0.5 --accept-threshold "$(threshold zero-shot)"
           --accept-threshold "$(threshold usersim:runs/ckpt/usersim-matchdec)"
           --accept-threshold "$(threshold usersim-nomatch:runs/ckpt/usersim-matchdec)"
           --accept-threshold "$(threshold usersim:interplay/simulators/usersim)")
echo "== decisions on ReDial test ($(date +%H:%M:%S))"
$IP evaluate fidelity --data data/redial --split test --out "$FID" "${held[@]}" "${users[@]}" "${held_cuts[@]}" \
  "${cuts[@]}" --parts human --no-progress
echo "== done ($(date +%H:%M:%S)); tables: interplay docs from-scorecard $FID --agent ... and docs from-recommenders"
