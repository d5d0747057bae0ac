"""The weights a run ran, pinned in its folder when it starts.

An agent spec such as ``usersim`` names a folder whose contents change when a simulator is
retrained or shipped; a result table made later from the spec would name the new weights. So a
simulation or an evaluation writes ``checkpoints.json`` (each agent spec's content hash,
:func:`current_checkpoint`) into its folder at the start, a
resumption whose weights changed is refused (its rows would mix two models), and result tables
read the hash from the folder (:func:`recorded_checkpoint`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from interplay.run_folder import RunDirError, write_json_atomic

CHECKPOINTS_FILE = "checkpoints.json"
NO_WEIGHTS = "-"


def current_checkpoint(spec: str) -> str:
    """The content hash of the weights ``spec`` runs now (``-`` for an agent without weights, or
    whose folder holds no model files)."""
    from interplay.agent_specs import AgentSpec, model_of
    from interplay.backends.default_model import resolve_model_path
    from interplay.results_docs import ResultsError, checkpoint_hash

    model = model_of(AgentSpec.parse(spec))
    if model is not None:
        model = resolve_model_path(model)
    if not model or not Path(model).is_dir():
        return NO_WEIGHTS
    try:
        return checkpoint_hash(Path(model))
    except ResultsError:
        return NO_WEIGHTS


def pin_checkpoints(folder: str | Path, specs: Iterable[object]) -> dict[str, str]:
    """Write each spec's current hash into ``folder``'s ``checkpoints.json``; raise
    :class:`RunDirError` when the folder already pinned other weights for a spec (a resumption
    after the agent's weights changed)."""
    path = Path(folder) / CHECKPOINTS_FILE
    pinned = json.loads(path.read_text()) if path.exists() else {}
    now = {str(spec): current_checkpoint(str(spec)) for spec in specs}  # a parsed AgentSpec saves as its text
    changed = [f"{spec} ({pinned[spec]} then, {h} now)" for spec, h in now.items()
               if spec in pinned and pinned[spec] != h]
    if changed:
        raise RunDirError(f"{path}: cannot resume, the weights changed since this run started: {'; '.join(changed)}; "
                          "run into another --out")
    pinned.update(now)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, pinned)
    return pinned


def recorded_checkpoint(folder: str | Path, spec: str) -> str:
    """The hash ``folder``'s run pinned for ``spec``; for a folder from before pinning, the hash of
    what ``spec`` names now."""
    path = Path(folder) / CHECKPOINTS_FILE
    if path.exists():
        pinned = json.loads(path.read_text())
        if spec in pinned:
            return pinned[spec]
    return current_checkpoint(spec)
