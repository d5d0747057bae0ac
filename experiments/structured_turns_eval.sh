#!/usr/bin/env bash
# Issue 14's figures: constrained vs free decoding on ReDial test and INSPIRED dev, for the
# zero-shot default model and trained usersim/recsim checkpoints, beside the popularity floor.
# Every evaluation resumes (--resume) and one that finished (metrics.json) is skipped, so the
# script can be stopped and rerun. Tabulate with: interplay evaluate report $OUT
#
#   LIMIT=50 OUT=runs/eval14 RECSIM=runs/ckpt/recsim USERSIM=runs/ckpt/usersim \
#       bash experiments/structured_turns_eval.sh [rec|rank|user|all]
#
# rank: the LLM recommenders' Recall@10/50, ranking the catalogue at the forced recommendation by
# beam search over the title trie (RANK_BEAM prefixes per token; 0 = exact, ~9 min a record on a CPU)
set -euo pipefail
OUT=${OUT:-runs/eval14}
LIMIT=${LIMIT:-50}
REDIAL=${REDIAL:-data/redial}
INSPIRED=${INSPIRED:-data/inspired}
RECSIM=${RECSIM:-runs/ckpt/recsim}
USERSIM=${USERSIM:-runs/ckpt/usersim}
RANK_BEAM=${RANK_BEAM:-100}
WHAT=${1:-all}
IP=${IP:-interplay}

run() {  # run KIND NAME ARGS...: one evaluation into $OUT/NAME unless it finished
  local kind=$1 name=$2; shift 2
  if [ -f "$OUT/$name/metrics.json" ]; then echo "done: $name"; return; fi
  echo "== $name ($(date +%H:%M:%S))"
  $IP evaluate "$kind" --out "$OUT/$name" --resume --no-progress --limit "$LIMIT" "$@"
}

data_args() {  # data_args redial|inspired
  if [ "$1" = redial ]; then echo "--data $REDIAL --split test"; else echo "--data $INSPIRED --split dev"; fi
}

if [ "$WHAT" = rec ] || [ "$WHAT" = all ]; then
  for ds in redial inspired; do
    run recommender "rec-popular-$ds" --agent "popular:$REDIAL" $(data_args $ds)
    for agent in zero-shot recsim; do
      spec=$agent; [ "$agent" = recsim ] && { [ -f "$RECSIM/interplay_training.json" ] || continue; spec="recsim:$RECSIM"; }
      run recommender "rec-$agent-$ds-constrained" --agent "$spec" $(data_args $ds) --decoding constrained
      run recommender "rec-$agent-$ds-constrained-unforced" --agent "$spec" $(data_args $ds) --decoding constrained --no-force-recommend
      run recommender "rec-$agent-$ds-free" --agent "$spec" $(data_args $ds) --decoding free --no-force-recommend
    done
  done
fi

if [ "$WHAT" = rank ] || [ "$WHAT" = all ]; then
  for ds in redial inspired; do
    for agent in zero-shot recsim; do
      spec=$agent; [ "$agent" = recsim ] && { [ -f "$RECSIM/interplay_training.json" ] || continue; spec="recsim:$RECSIM"; }
      run recommender "rec-$agent-$ds-ranked" --agent "$spec" $(data_args $ds) --decoding constrained \
        --rank-items 50 --rank-beam "$RANK_BEAM"
    done
  done
fi

if [ "$WHAT" = user ] || [ "$WHAT" = all ]; then
  for ds in redial inspired; do
    for agent in zero-shot usersim; do
      spec=$agent; [ "$agent" = usersim ] && { [ -f "$USERSIM/interplay_training.json" ] || continue; spec="usersim:$USERSIM"; }
      for dec in constrained free; do
        run user "user-$agent-$ds-$dec" --agent "$spec" $(data_args $ds) --decoding "$dec"
      done
    done
  done
fi
