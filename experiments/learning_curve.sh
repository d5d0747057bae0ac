#!/usr/bin/env bash
# The simulators' learning curve (issue 35): the recipe of experiments/train_simulators.sh on the
# first 500, 1,500 and all 4,001 ReDial train dialogues of data/redial-all (the 500 point is the
# earlier shipped recipe, the 1,500 point the shipped pair).
# Resumable and one heavy job at a time: rerun after an interruption; finished stages and
# evaluations are skipped.
#
#   bash experiments/learning_curve.sh              # SIZES="500 1500 0" (0: all)
#   SIZES=1500 bash experiments/learning_curve.sh   # trains one size; the scorecard still has every
#                                                   # size's UserSim found (FID_SIZES, default all three)
#
# CPU budget (2 cores, bf16, docs/simulators.md): the whole-dialogue stage of the UserSim stays the
# 500-dialogue adapter of the recipe (copied from BASE) and every size continues it with the decision
# stage on its own data; the RecSim trains on each size. Measured here: the decision stage ~14 s
# per step of 8 records, ~2 examples per record (1,500: ~1.5 h; 4,001: ~4 h), the RecSim ~10 s per
# step (1,500: ~35 min; 4,001: ~1.5 h): about 7.5 h for both sizes, within the issue's 12.
# Then per size: the UserSim's decisions per slice and its replays on ReDial test (decoded with the
# simulation's repetition controls, as the shipped one is judged), beside the 500-dialogue point, in
# one scorecard of their own ($FID); the RecSim's forced recommendations on ReDial test (MatchScore,
# Recall@1, and Recall@10 from a beam of 50 over the catalogue's title trie: ~17-19 min per size here, measured 2026-12-07). No accept threshold: ReDial valid has too few rejections to choose one on (docs/simulators.md).
set -euo pipefail
IP=${IP:-interplay}
DATA=${DATA:-data/redial-all}
SIZES=${SIZES:-"500 1500 0"}
BASE=${BASE:-runs/simulators}
FID=${FID:-runs/fidelity/redial-test-curve}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

# data/redial and $DATA: train_simulators.sh builds them when missing (its build(), docs/data.md),
# in the calls below, before any evaluation reads them
# the MatchScore item encoder the RecSim's evaluation reads (~8 min here), trained once when missing
[ -f "${INTERPLAY_CACHE:-$HOME/.cache/interplay}/matchscore/encoder.pt" ] || $IP matchscore train
# the UserSim's whole-dialogue stage (500 dialogues, ~25 min here), shared by every size: trained
# once into BASE when missing (make simulators trains it too)
[ -f "$BASE/usersim-dialogues/interplay_training.json" ] || OUT=$BASE SHIP=0 bash experiments/train_simulators.sh usersim-dialogues

# a size's folder: runs/curve-N, runs/curve-all for 0 (all)
curve_dir() { echo "runs/curve-$([ "$1" = 0 ] && echo all || echo "$1")"; }

for n in $SIZES; do
  out=$(curve_dir "$n")
  mkdir -p "$out"
  [ -d "$out/usersim-dialogues" ] || cp -r "$BASE/usersim-dialogues" "$out/usersim-dialogues"
  echo "== $out: training ($(date +%H:%M:%S))"
  DECISION_DATA=$DATA DECISION_RECORDS=$n RECSIM_DATA=$DATA RECSIM_RECORDS=$n OUT=$out SHIP=0 REJECTIONS=${REJECTIONS:-templates} bash experiments/train_simulators.sh usersim recsim
  echo "== $out: RecSim on ReDial test ($(date +%H:%M:%S))"
  [ -f "$out/recsim-redial-test-rank10/metrics.json" ] || $IP evaluate recommender --agent "recsim:$out/recsim" \
    --data data/redial --split test --rank-items 10 --rank-beam 50 --out "$out/recsim-redial-test-rank10" --resume --no-progress
done

# the scorecard holds every size's UserSim that exists (FID_SIZES), so a run of one size still gives
# the whole curve in one table. An adapter lost with a machine comes back from git, same weights:
# 500 from fb5caa5, 1,500 from 5491959 (git show REV:interplay/simulators/usersim/FILE, each file)
users=()
for n in ${FID_SIZES:-500 1500 0}; do
  out=$(curve_dir "$n")
  [ -f "$out/usersim/adapter_config.json" ] && users+=(--user "usersim:$out/usersim")
done

echo "== decisions and replays on ReDial test ($(date +%H:%M:%S))"
$IP evaluate fidelity --data data/redial --split test --out "$FID" "${users[@]}" --parts human,replay \
  --repetition-controls --no-progress
echo "== done ($(date +%H:%M:%S)); tables: interplay docs from-scorecard $FID --name learning-curve-redial-test"
echo "   and interplay docs from-recommenders over runs/curve-*/recsim-redial-test-rank10"
