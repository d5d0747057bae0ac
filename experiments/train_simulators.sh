#!/usr/bin/env bash
# The shipped simulators, retrained from the data (`make simulators`): LoRA adapters on the default
# model, resumable (rerun after an interruption: each stage continues from its last saved step; a
# finished stage is skipped), one heavy job at a time, then shipped into interplay/simulators/ with
# their model cards.
#
#   bash experiments/train_simulators.sh                 # both, on data/redial (500 train dialogues)
#   DATA=data/redial-all RECORDS=1500 bash experiments/train_simulators.sh recsim
#   REJECTIONS=people OUT=runs/sim-people SHIP=0 bash experiments/train_simulators.sh usersim
#
# UserSim: the two-stage recipe of docs/decisions.md as one adapter: stage 1 whole dialogues with
# grounded facts and match counts, stage 2 the decision stage (short windows around each answered
# recommendation, counterfactual negatives for half the records) continuing stage 1's adapter.
# RecSim: whole dialogues. Times on this machine's 2 cores and on a GPU: docs/simulators.md.
set -euo pipefail
IP=${IP:-interplay}
DATA=${DATA:-data/redial}
RECORDS=${RECORDS:-0}          # train on the first N train records (0: all of DATA)
OUT=${OUT:-runs/simulators}
SHIP=${SHIP:-1}                # 0: train only
REJECTIONS=${REJECTIONS:-templates}  # the UserSim's counterfactual rejections: templates | people (ReDial seekers' words)
# rank 16 on every linear layer of the attention and the MLP: 4.9M parameters, 19.6 MB in fp32
LORA=(--lora --lora-rank 16 --lora-alpha 32 --lora-targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj
      --lr ${LR:-1e-3})
COMMON=(--data "$DATA" --max-train-records "$RECORDS" --epochs 1 --grad-accum 2 --save-steps 8 --resume
        --report-to none "${LORA[@]}")
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

[ -f "$DATA/train.jsonl" ] || $IP data build --source redial --path ../shared/data/redial --out "$DATA" --no-progress

stage() {  # stage NAME ARGS...: train unless finished (interplay_training.json is written at the end)
  local name=$1; shift
  if [ ! -f "$OUT/$name/interplay_training.json" ]; then
    echo "== $name ($(date +%H:%M:%S))"
    $IP train --out "$OUT/$name" "${COMMON[@]}" "$@"
  fi
}

roles=("$@"); [ ${#roles[@]} -eq 0 ] && roles=(usersim recsim)
for role in "${roles[@]}"; do
  case "$role" in
    usersim)
      stage usersim-dialogues --role user --grounding-match
      stage usersim --role user --model "$OUT/usersim-dialogues" --grounding-match --counterfactual-negatives 0.5 \
        --rejections "$REJECTIONS" --decision-examples 1 --no-whole-dialogues
      r=user ;;
    recsim)
      stage recsim --role recommender
      r=recommender ;;
    *) echo "unknown simulator $role (usersim | recsim)" >&2; exit 2 ;;
  esac
  if [ "$SHIP" = 1 ]; then
    $IP simulators ship "$OUT/$role" --role "$r" \
      --command "DATA=$DATA RECORDS=$RECORDS LR=${LR:-1e-3} REJECTIONS=$REJECTIONS bash experiments/train_simulators.sh $role"
    # no accept threshold ships with the UserSim: the one chosen on ReDial valid (0.661, 10 rejections,
    # ROC AUC 0.41) made it refuse its own target in 10 of 12 known-answer episodes (docs/simulators.md);
    # choose one with 'interplay evaluate calibrate' where a valid split has enough rejections
  fi
done
