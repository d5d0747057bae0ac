"""Metrics computed from episode logs (``RUN_DIR/episodes.jsonl``) and nothing else."""

from interplay.metrics.core import (
    Summary,
    action_distribution,
    dist_n,
    outcome_class,
    recall_at_k,
    summarize_values,
    target_accepted,
    termination_mix,
    turns_to_accept,
    words,
)

__all__ = ["Summary", "action_distribution", "dist_n", "outcome_class", "recall_at_k", "summarize_values",
           "target_accepted", "termination_mix", "turns_to_accept", "words"]
