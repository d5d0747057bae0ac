"""One model actor serving every episode of a run, in micro-batches.

Requests from many concurrent episodes queue up; the server takes up to ``max_batch`` of them
(waiting at most ``batch_wait_ms`` for more once one has arrived), generates them in one batched
call in a worker thread, and answers each. Requests with different generation settings are never
mixed in one call. For sampled decoding the batch's random state comes from the seed of its first
request, so sampled runs are bit-reproducible only with ``max_batch=1``; greedy runs are
reproducible up to batched numerics.
"""

from __future__ import annotations

import asyncio
import time

from interplay.backends.base import GenerationParams


class ModelServer:
    """Async micro-batching front of a generation backend (use as a Ray async actor)."""

    def __init__(self, model: str | None, dtype: str = "auto", max_batch: int = 16,
                 batch_wait_ms: float = 20.0, num_threads: int | None = None, backend_factory=None,
                 backend: str = "transformers"):
        if backend_factory is None:
            from interplay.backends.registry import create_backend

            self.backend = create_backend(backend, model, dtype=dtype, num_threads=num_threads)
        else:
            self.backend = backend_factory()
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_ms / 1000
        self._queue: asyncio.Queue | None = None
        self._pending: list = []
        self._worker: asyncio.Task | None = None
        self._stats = {"batches": 0, "requests": 0, "busy_s": 0.0}

    def model_path(self) -> str:
        return str(getattr(self.backend, "model_path", ""))

    async def generate(self, prompts: list[str], params: GenerationParams) -> list[str]:
        """Completions of ``prompts``, batched with whatever else is queued."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve())
        loop = asyncio.get_running_loop()
        futures = []
        for prompt in prompts:
            fut = loop.create_future()
            self._queue.put_nowait((params, prompt, fut))
            futures.append(fut)
        return list(await asyncio.gather(*futures))

    async def _collect(self) -> tuple[list, list]:
        """A batch of requests sharing the first one's settings, and those set aside."""
        loop = asyncio.get_running_loop()
        first = self._pending.pop(0) if self._pending else await self._queue.get()
        batch, skipped = [first], []
        key = first[0].batch_key()
        deadline = loop.time() + self.batch_wait_s
        while len(batch) < self.max_batch:
            if self._pending:
                req = self._pending.pop(0)
            elif not self._queue.empty():
                req = self._queue.get_nowait()
            else:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    req = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            (batch if req[0].batch_key() == key else skipped).append(req)
        return batch, skipped

    async def _serve(self) -> None:
        while True:
            batch, skipped = await self._collect()
            first = batch[0]
            self._pending = skipped + self._pending
            prompts = [r[1] for r in batch]
            t0 = time.perf_counter()
            try:
                outputs = await asyncio.to_thread(self.backend.generate, prompts, first[0])
            except Exception as exc:  # every waiting episode learns of the failure
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self._stats["busy_s"] += time.perf_counter() - t0
            self._stats["batches"] += 1
            self._stats["requests"] += len(batch)
            for (_, _, fut), out in zip(batch, outputs):
                if not fut.done():
                    fut.set_result(out)

    async def stats(self) -> dict:
        """Batches served, requests, mean batch size, seconds spent generating."""
        s = dict(self._stats)
        s["mean_batch"] = s["requests"] / s["batches"] if s["batches"] else 0.0
        return s


class RemoteBackend:
    """A :class:`~interplay.backends.base.GenerationBackend` that forwards to a ModelServer actor."""

    def __init__(self, server_handle):
        self.server = server_handle

    def generate(self, prompts: list[str], params: GenerationParams) -> list[str]:
        import ray

        return ray.get(self.server.generate.remote(prompts, params))
