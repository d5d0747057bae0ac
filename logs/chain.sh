#!/bin/bash
cd /work/main
source .venv/bin/activate
while kill -0 32221 2>/dev/null; do sleep 10; done
echo "train done $(date)"
python -m pytest -x -q tests/test_structured_turns.py -k "evaluate_recommender_forces" > logs/t2.log 2>&1
echo "t2 rc=$? $(date)"
interplay evaluate recommender --agent recsim:runs/ckpt/recsim-cand --data data/redial --split test \
  --recommender-candidates 20 --titles candidates --rank-items 50 --rank-beam 50 \
  --out runs/recs/recsim-cand-forced-redial-test --resume --no-progress > logs/recsim-cand-eval.log 2>&1
echo "eval rc=$? $(date)"
python -m pytest -x -q tests/test_ray_job.py -k two_node > logs/t3.log 2>&1
echo "t3 rc=$? $(date)"
