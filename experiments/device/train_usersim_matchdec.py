"""The two-stage UserSim recipe (docs/decisions.md: ``usersim-match``, then the decision stage
``usersim-matchdec`` on top of it) in one process, through the same ``TrainConfig`` the CLI
builds, for a lent GPU machine where the ``interplay`` command is not installed (README.md in this
folder). Same settings as ``bash experiments/decision_recipe.sh matchdec``, one save per epoch.

    python experiments/device/train_usersim_matchdec.py DATA_DIR CKPT_DIR
"""

from __future__ import annotations

import json
import sys
import time

from interplay.protocol import Role
from interplay.training.train import TrainConfig, train


def main(data: str, ckpts: str) -> None:
    common = dict(role=Role.USER, data=data, epochs=1, dtype="bf16", grad_accum=2, report_to="none")
    t = time.time()
    m1 = train(TrainConfig(out=f"{ckpts}/usersim-match", grounding_match=True, **common), resume=True)
    print("STAGE match", round(time.time() - t, 1), "s, valid loss", json.dumps(m1["valid_loss"]), flush=True)
    t = time.time()
    m2 = train(TrainConfig(out=f"{ckpts}/usersim-matchdec", model=f"{ckpts}/usersim-match", grounding_match=True,
                           counterfactual_negatives=0.5, decision_examples=1, whole_dialogues=False, **common),
               resume=True)
    print("STAGE matchdec", round(time.time() - t, 1), "s, valid loss", json.dumps(m2["valid_loss"]), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
