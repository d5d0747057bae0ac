"""The KV store of kept conversations: per cache key, the token ids processed so far and their keys/values.

One entry per key (an episode and role), least recently used entries evicted beyond a byte budget,
optionally kept in files instead of memory. :func:`~interplay.backends.kv_reuse.generate_reusing_prefix`
takes entries out into its batch buffers and puts them back when a turn is done.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values of shape [1, kv_heads, len, head_dim]


@dataclass
class _Entry:
    ids: list[int]
    kv: KV | None  # None while the entry lives in its file
    nbytes: int
    path: str | None = None
    shape: tuple = ()  # the file's block: [layers, 2, 1, kv_heads, len, head_dim]
    dtype: torch.dtype | None = None
    device: torch.device | None = None


@dataclass
class PrefixKVStore:
    """LRU store of processed token ids and their KV tensors, one entry per key, within ``budget_bytes``.

    With ``spill_dir``, each entry's tensors are written to a file there when stored and read back
    when looked up, so kept conversations occupy the kernel's page cache (reclaimable, and written
    to disk under memory pressure) instead of this process's memory; the bytes are the same, so
    reuse stays exact."""

    budget_bytes: int
    #: storage dtype of kept entries (None: as computed); the decode buffers stay in the model's dtype
    dtype: torch.dtype | None = None
    #: a folder for the entries' files (None: entries stay in memory)
    spill_dir: str | None = None
    entries: OrderedDict = field(default_factory=OrderedDict)
    used_bytes: int = 0
    stats: dict = field(default_factory=lambda: {"lookups": 0, "hits": 0, "reused_tokens": 0,
                                                 "prefilled_tokens": 0, "stored": 0, "evictions": 0,
                                                 "peak_mb": 0.0})
    _files: int = 0

    def match(self, key: str | None, ids: list[int]) -> int:
        """Length of the reusable prefix of ``ids`` under ``key`` (always leaving one token to
        prefill); marks the entry recently used."""
        self.stats["lookups"] += 1
        entry = self.entries.get(key) if key is not None else None
        if entry is None:
            return 0
        self.entries.move_to_end(key)
        n = 0
        limit = min(len(entry.ids), len(ids) - 1)
        while n < limit and entry.ids[n] == ids[n]:
            n += 1
        self.stats["hits"] += int(n > 0)
        return n

    def lookup(self, key: str | None, ids: list[int]) -> tuple[int, KV | None]:
        """:meth:`match`, and the stored KV when there is a reusable prefix."""
        n = self.match(key, ids)
        if n == 0:
            return 0, None
        entry = self.entries[key]
        return n, entry.kv if entry.kv is not None else self._read(entry)

    def take(self, key: str) -> KV | None:
        """``key``'s KV (read back from its file if spilled), removed from the store."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        kv = entry.kv if entry.kv is not None else self._read(entry)
        self.drop(key)
        return kv

    def put(self, key: str, ids: list[int], kv: KV) -> None:
        """Store (replace) ``key``'s entry, then evict least recently used entries over budget."""
        self.drop(key)
        self.stats["stored"] += 1
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if nbytes > self.budget_bytes:
            return
        entry = _Entry(ids, kv, nbytes)
        if self.spill_dir is not None:
            self._write(entry)
        self.entries[key] = entry
        self.used_bytes += nbytes
        self.stats["peak_mb"] = max(self.stats["peak_mb"], round(self.used_bytes / 2**20, 1))
        while self.used_bytes > self.budget_bytes:
            _, old = self.entries.popitem(last=False)
            self._forget(old)
            self.stats["evictions"] += 1

    def drop(self, key: str) -> None:
        """Forget ``key`` (its episode ended)."""
        old = self.entries.pop(key, None)
        if old is not None:
            self._forget(old)

    def _forget(self, entry: _Entry) -> None:
        self.used_bytes -= entry.nbytes
        if entry.path is not None:
            Path(entry.path).unlink(missing_ok=True)

    def _write(self, entry: _Entry) -> None:
        """Move ``entry``'s tensors into a file (layer by layer, keys then values: one block)."""
        t0 = time.perf_counter()
        k0 = entry.kv[0][0]
        self._files += 1
        entry.path = str(Path(self.spill_dir) / f"{self._files}.kv")
        entry.shape = (len(entry.kv), 2, *k0.shape)
        entry.dtype, entry.device = k0.dtype, k0.device
        with open(entry.path, "wb") as f:
            for k, v in entry.kv:
                f.write(k.contiguous().cpu().view(torch.uint8).numpy().data)
                f.write(v.contiguous().cpu().view(torch.uint8).numpy().data)
        entry.kv = None
        self.stats["spill_s"] = self.stats.get("spill_s", 0.0) + time.perf_counter() - t0

    def _read(self, entry: _Entry) -> KV:
        """The tensors of a spilled entry, read back from its file."""
        import numpy as np

        t0 = time.perf_counter()
        raw = torch.from_numpy(np.fromfile(entry.path, dtype=np.uint8))
        block = raw.view(entry.dtype).reshape(entry.shape).to(entry.device)
        self.stats["spill_s"] = self.stats.get("spill_s", 0.0) + time.perf_counter() - t0
        return [(block[i, 0], block[i, 1]) for i in range(entry.shape[0])]
