#!/usr/bin/env bash
# The decision-aware recipe table of docs/decisions.md: train one UserSim per variant (resumable:
# rerun the same command after an interruption and it continues from the last saved step), then
# score its decisions against the humans with experiments/decision_eval.sh (threshold from ReDial
# valid, applied to ReDial test and INSPIRED dev). Variants run one after another (one heavy job
# at a time on a small machine). Tabulate with: interplay evaluate report runs/decisions
#
#   bash experiments/decision_recipe.sh cf05 aw3 plus ep2 simrule
#
# variants (each on top of the documented recipe: 1 epoch, dtype by hardware (bf16 where native), grad-accum 2, grounded):
#   cf05     counterfactual negatives for half the train records
#   aw3      action-tag loss weight 3
#   cf05aw3  both
#   plus     ReDial + redial-more (data/redial-plus: 1,450 train dialogues)
#   ep2      2 epochs
#   simrule  trained on simulated dialogue: 500 rule-agent episodes on ReDial train (data/sim-rule)
#   match    grounded facts with match counts ("Matches 2 of your 6 wishes", --grounding-match)
#   matchcf  match counts and counterfactual negatives for half the train records
#   matchdec a decision stage on top of usersim-match: short windows centred on each answered
#            recommendation (counterfactual negatives included), no whole dialogues
set -euo pipefail
CKPTS=${CKPTS:-runs/ckpt}
OUT=${OUT:-runs/decisions}
IP=${IP:-interplay}

args_of() {
  case "$1" in
    cf05) echo "--data data/redial --counterfactual-negatives 0.5" ;;
    aw3) echo "--data data/redial --action-loss-weight 3" ;;
    cf05aw3) echo "--data data/redial --counterfactual-negatives 0.5 --action-loss-weight 3" ;;
    plus) echo "--data data/redial-plus" ;;
    ep2) echo "--data data/redial" ;;  # epochs set below
    simrule) echo "--data data/sim-rule" ;;
    match) echo "--data data/redial --grounding-match" ;;
    matchcf) echo "--data data/redial --grounding-match --counterfactual-negatives 0.5" ;;
    matchdec) echo "--data data/redial --model $CKPTS/usersim-match --grounding-match --counterfactual-negatives 0.5 \
--decision-examples 1 --no-whole-dialogues" ;;
    *) echo "unknown variant $1" >&2; return 2 ;;
  esac
}

prepare() {  # the data (or base checkpoint) a variant needs, built when missing
  case "$1" in
    matchdec) [ -f "$CKPTS/usersim-match/interplay_training.json" ] || bash "$0" match ;;
    plus) [ -f data/redial-plus/train.jsonl ] || $IP data build --source redial --path ../shared/data/redial \
            --path ../shared/data/redial-more --out data/redial-plus --no-progress ;;
    simrule)
      [ -f runs/sim-rule-train/summary.json ] || $IP simulate --data data/redial --split train --user rule \
        --recommender rule --episodes 500 --max-turns 10 --out runs/sim-rule-train --resume --no-progress
      [ -f data/sim-rule/train.jsonl ] || $IP data build --source episodes --path runs/sim-rule-train \
        --out data/sim-rule --no-progress ;;
  esac
}

for v in "$@"; do
  a=$(args_of "$v")
  prepare "$v"
  ckpt="$CKPTS/usersim-$v"
  if [ ! -f "$ckpt/interplay_training.json" ]; then  # written when training ends
    echo "== train $v ($(date +%H:%M:%S))"
    # shellcheck disable=SC2086
    epochs=1; [ "$v" = ep2 ] && epochs=2
    $IP train --role user $a --out "$ckpt" --epochs "$epochs" --grad-accum 2 --save-steps 8 \
      --resume --report-to none
  fi
  OUT=$OUT IP=$IP bash experiments/decision_eval.sh "usersim-$v=usersim:$ckpt"
done
