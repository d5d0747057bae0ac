"""Pack a checkpoint for a trip through a file-size limit: weights cast to bf16, gzipped and cut
into parts of just under 16 MiB (``w00``, ``w01``, ...), the small files in ``meta.tar``.
Unpack with ``unpack_checkpoint.sh`` (README.md in this folder).

    python experiments/device/pack_checkpoint.py CKPT_DIR OUT_DIR
"""

from __future__ import annotations

import gzip
import sys
import tarfile
import tempfile
from pathlib import Path

PART_BYTES = 16 * 2**20 - 4096


def pack(src: Path, dst: Path) -> int:
    import torch
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True, exist_ok=True)
    weights = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(src / "model.safetensors").items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_file(weights, path, metadata={"format": "pt"})
        data = gzip.compress(path.read_bytes(), 1)
    for i in range(0, len(data), PART_BYTES):
        (dst / f"w{i // PART_BYTES:02d}").write_bytes(data[i:i + PART_BYTES])
    with tarfile.open(dst / "meta.tar", "w") as t:
        for f in src.iterdir():
            if f.is_file() and f.name != "model.safetensors":
                t.add(f, arcname=f.name)
    return -(-len(data) // PART_BYTES)


if __name__ == "__main__":
    print("parts", pack(Path(sys.argv[1]), Path(sys.argv[2])))
