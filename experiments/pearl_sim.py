"""Run a simulation from a config, on a Ray cluster when there is one.

    python experiments/pearl_sim.py --config experiments/configs/pearl_sim.json --episodes 100
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python experiments/pearl_sim.py --out /abs/path/run

Connects to the cluster named by ``RAY_ADDRESS`` (``ray job submit`` sets it), else starts a local
Ray. Any ``interplay simulate`` flag overrides the config file.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).with_name("configs") / "pearl_sim.json"


def main(argv: list[str] | None = None) -> None:
    from interplay.cli import app

    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in args:
        args = ["--config", str(DEFAULT_CONFIG), *args]
    app(["simulate", *args], prog_name="pearl_sim.py")


if __name__ == "__main__":
    main()
