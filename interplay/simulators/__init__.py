"""The trained simulators shipped with the package: LoRA adapters on the default model.

``interplay/simulators/usersim/`` and ``recsim/`` each hold an adapter folder from
``interplay train --lora`` (``adapter_config.json``, ``adapter_model.safetensors``, the tokenizer,
``interplay_training.json``) and its model card ``README.md``. The specs ``usersim`` and ``recsim``
without a checkpoint use them; ``make simulators`` retrains and reships them
(``experiments/train_simulators.sh``).
"""

from __future__ import annotations

from pathlib import Path

from interplay.protocol import Role

#: the folder of each role's shipped adapter, inside this package
SHIPPED_NAMES = {Role.USER: "usersim", Role.RECOMMENDER: "recsim"}


def shipped_dir(role: Role) -> Path:
    """Where the shipped simulator of ``role`` lives (it may not be there: see :func:`shipped_simulator`)."""
    return Path(__file__).parent / SHIPPED_NAMES[role]


def shipped_simulator(role: Role) -> Path:
    """The shipped adapter folder of ``role``; a clear error when this install has none."""
    from interplay.backends.adapters import is_adapter

    folder = shipped_dir(role)
    if not is_adapter(folder):
        raise ValueError(f"no trained {SHIPPED_NAMES[role]} ships with this install ({folder} holds no adapter): "
                         f"train one with 'make simulators', or name a checkpoint: {SHIPPED_NAMES[role]}:CKPT_DIR")
    return folder
