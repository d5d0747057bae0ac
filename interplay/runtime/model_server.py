"""One model actor serving every episode of a run, in micro-batches.

Requests from many concurrent episodes queue up; the server takes up to ``max_batch`` of them,
generates them in one batched call in a worker thread, and answers each. Once a request has
arrived it keeps collecting while more keep coming: until ``max_batch``, until no new request has
come for ``batch_wait_ms``, or until ``max_wait_ms`` have passed. Episodes answer in waves (a
batch's replies come back as the next turn's requests, one by one, over some hundred ms), and a
fixed deadline after the first arrival split each wave into a large and a small batch. Requests with different generation settings are never
mixed in one call, except on a backend that decodes each request with its own settings
(``row_params``: the transformers and vLLM backends), where only the stop strings must agree. A backend that accepts per-request keys (the transformers backend) samples each
request from its own seed, so sampled runs do not depend on batching; for other backends the
batch's random state comes from its first request's seed. Greedy runs are reproducible up to
batched numerics (exact in float32 in our tests; see docs/performance.md for bf16).

Each request may carry a cache key (its episode and role): a backend with a prefix KV store
(:class:`~interplay.backends.transformers_backend.TransformersBackend` with ``prefix_cache_mb > 0``)
then prefills only what that conversation's stored cache does not cover; :meth:`ModelServer.release`
drops a finished episode's entries.
"""

from __future__ import annotations

import asyncio
import resource
import time

from interplay.backends.base import BackendCapabilities, GenerationParams, TurnConstraint, capabilities_of


class ModelServer:
    """Async micro-batching front of a generation backend (use as a Ray async actor)."""

    def __init__(self, model: str | None, dtype: str = "auto", max_batch: int = 16,
                 batch_wait_ms: float = 20.0, num_threads: int | None = None, backend_factory=None,
                 backend: str = "transformers", prefix_cache_mb: float = 0.0, max_wait_ms: float = 1000.0,
                 catalogues: dict[str, list[str]] | None = None, prefix_cache_spill: bool = False):
        if backend_factory is None:
            from interplay.backends.registry import create_backend

            extra = {"prefix_cache_mb": prefix_cache_mb, "prefix_cache_spill": prefix_cache_spill} if prefix_cache_mb > 0 else {}
            self.backend = create_backend(backend, model, dtype=dtype, num_threads=num_threads, **extra)
        else:
            self.backend = backend_factory()
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_ms / 1000
        self.max_wait_s = max(max_wait_ms, batch_wait_ms) / 1000
        self._queue: asyncio.Queue | None = None
        self._pending: list = []
        self._worker: asyncio.Task | None = None
        self._stats = {"batches": 0, "requests": 0, "busy_s": 0.0}
        self._catalogues: set[str] = set()
        self._valid: set[TurnConstraint] = set()
        # catalogues given at construction are registered again when Ray restarts a dead server
        for key, titles in (catalogues or {}).items():
            if self.supports_constraints():
                self.backend.register_catalogue(key, titles)
                self._catalogues.add(key)

    def ping(self) -> bool:
        """Whether the server answers (the driver asks after an infrastructure failure)."""
        return True

    def node(self) -> dict:
        """Where this actor runs: :func:`actor_node`."""
        return actor_node()

    def model_path(self) -> str:
        return str(getattr(self.backend, "model_path", ""))

    @property
    def reuses_prefixes(self) -> bool:
        return getattr(self.backend, "prefix_store", None) is not None

    def supports_constraints(self) -> bool:
        """Whether the backend applies :class:`~interplay.backends.base.TurnConstraint` s."""
        return capabilities_of(self.backend).constraints

    async def register_catalogue(self, key: str, titles: list[str]) -> None:
        """Titles that constrained requests may name under ``catalogue == key`` (idempotent)."""
        if self.supports_constraints() and key not in self._catalogues:
            await asyncio.to_thread(self.backend.register_catalogue, key, titles)
            self._catalogues.add(key)

    async def _check(self, constraint: TurnConstraint) -> None:
        """Compile a constraint before it joins a batch, so a grammar no turn can satisfy fails
        its own request (GrammarError) and never the batch it would have shared."""
        if constraint not in self._valid:
            await asyncio.to_thread(self.backend.validate_constraint, constraint)
            if len(self._valid) > 4096:  # per-turn title lists (candidates) make many distinct constraints
                self._valid.clear()
            self._valid.add(constraint)

    async def generate(self, prompts: list[str], params: GenerationParams,
                       cache_keys: list[str | None] | None = None,
                       keep_caches: list[bool] | None = None,
                       constraints: list[TurnConstraint | None] | None = None) -> list[str]:
        """Completions of ``prompts``, batched with whatever else is queued; ``cache_keys`` name
        each prompt's conversation for KV reuse, ``keep_caches`` (default all true) says whether
        its cache is worth keeping for a next turn, ``constraints`` (for a backend that
        :meth:`supports_constraints`) restrict each prompt to legal turns."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve())
        loop = asyncio.get_running_loop()
        futures = []
        keys = cache_keys if cache_keys is not None else [None] * len(prompts)
        keep = keep_caches if keep_caches is not None else [True] * len(prompts)
        cons = constraints if constraints is not None and self.supports_constraints() else [None] * len(prompts)
        for c in cons:
            if c is not None:
                await self._check(c)
        for prompt, key, k, c in zip(prompts, keys, keep, cons):
            fut = loop.create_future()
            self._queue.put_nowait((params, prompt, fut, key, k, c))
            futures.append(fut)
        return list(await asyncio.gather(*futures))

    async def _collect(self) -> tuple[list, list]:
        """A batch of requests sharing the first one's settings, and those set aside."""
        loop = asyncio.get_running_loop()
        first = self._pending.pop(0) if self._pending else await self._queue.get()
        batch, skipped = [first], []
        keyed = self._batch_key
        key = keyed(first[0])
        started = loop.time()
        while len(batch) < self.max_batch:
            if self._pending:
                req = self._pending.pop(0)
            elif not self._queue.empty():
                req = self._queue.get_nowait()
            else:  # wait while requests keep arriving: a gap of batch_wait_s ends the batch
                remaining = min(self.batch_wait_s, started + self.max_wait_s - loop.time())
                if remaining <= 0:
                    break
                try:
                    req = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            (batch if keyed(req[0]) == key else skipped).append(req)
        return batch, skipped

    def _batch_key(self, params: GenerationParams) -> tuple:
        """What requests sharing a batch must agree on: only the stop strings for a backend that
        decodes each request with its own settings, else every setting but the seed."""
        return params.row_batch_key() if capabilities_of(self.backend).row_params else params.batch_key()

    async def _serve(self) -> None:
        while True:
            batch, skipped = await self._collect()
            first = batch[0]
            self._pending = skipped + self._pending
            prompts = [r[1] for r in batch]
            extra = {}
            if capabilities_of(self.backend).request_keys:
                extra = {"cache_keys": [r[3] for r in batch], "seeds": [r[0].seed for r in batch],
                         "keep_caches": [r[4] for r in batch]}
            if any(r[5] is not None for r in batch):
                extra["constraints"] = [r[5] for r in batch]
            if capabilities_of(self.backend).row_params:
                extra["row_params"] = [r[0] for r in batch]
            t0 = time.perf_counter()
            try:
                outputs = await asyncio.to_thread(self.backend.generate, prompts, first[0], **extra)
            except Exception as exc:  # every waiting episode learns of the failure
                for _, _, fut, *_ in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self._stats["busy_s"] += time.perf_counter() - t0
            self._stats["batches"] += 1
            self._stats["requests"] += len(batch)
            for (_, _, fut, *_), out in zip(batch, outputs):
                if not fut.done():
                    fut.set_result(out)

    def supports_ranking(self) -> bool:
        """Whether the backend ranks catalogue titles by likelihood (``rank_titles``)."""
        return capabilities_of(self.backend).ranking and self.supports_constraints()

    async def rank_titles(self, prompts: list[str], catalogue: str, k: int, beam: int = 0) -> list[list[str]]:
        """The backend's top-``k`` titles of ``catalogue`` after each prompt (see
        :meth:`TransformersBackend.rank_titles`); runs beside generation batches, in a thread."""
        return await asyncio.to_thread(self.backend.rank_titles, prompts, catalogue, k, beam)

    def supports_scoring(self) -> bool:
        """Whether the backend scores continuations (``score_continuations``)."""
        return capabilities_of(self.backend).scoring

    async def score_continuations(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        """Log-likelihoods of each prompt's continuations (decisions read without generating)."""
        return await asyncio.to_thread(self.backend.score_continuations, prompts, continuations)

    async def release(self, cache_keys: list[str]) -> None:
        """Forget the stored KV of finished conversations."""
        if self.reuses_prefixes:
            await asyncio.to_thread(self.backend.release, cache_keys)

    async def stats(self) -> dict:
        """Batches served, requests, mean batch size, seconds spent generating, prefix-cache
        counters, and this process's peak RSS."""
        s = dict(self._stats)
        s["mean_batch"] = s["requests"] / s["batches"] if s["batches"] else 0.0
        if capabilities_of(self.backend).stats:
            s.update(self.backend.stats())
        s["peak_rss_mb"] = peak_rss_mb()
        return s


def actor_node() -> dict:
    """The Ray node id and IP address of the calling process (where an actor was placed), and the
    GPU ids Ray assigned it."""
    import ray

    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "ip": ray.util.get_node_ip_address(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class RemoteBackend:
    """A :class:`~interplay.backends.base.GenerationBackend` that forwards to a ModelServer actor;
    ``cache_key`` (one per episode and role) lets the server reuse that conversation's KV cache."""

    def __init__(self, server_handle, cache_key: str | None = None,
                 capabilities: BackendCapabilities | None = None):
        self.server = server_handle
        self.cache_key = cache_key
        self.keep_cache = True  # False on the conversation's last turn (set by the agent host)
        #: what the server's backend can do (asked once by the agent host); the keys and seeds are
        #: this proxy's business, so ``request_keys`` stays off
        self.capabilities = capabilities or BackendCapabilities()

    def register_catalogue(self, key: str, titles: list[str]) -> None:
        """Nothing to do: the agent host registered the run's catalogue with the server once."""

    def score_continuations(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        """The server's log-likelihoods of each prompt's continuations (only with the ``scoring`` capability)."""
        import ray

        return ray.get(self.server.score_continuations.remote(prompts, continuations))

    def rank_titles(self, prompts: list[str], catalogue: str, k: int, beam: int = 0) -> list[list[str]]:
        """The server's top-``k`` titles after each prompt (only with the ``ranking`` capability)."""
        import ray

        return ray.get(self.server.rank_titles.remote(prompts, catalogue, k, beam))

    def generate(self, prompts: list[str], params: GenerationParams,
                 constraints: list[TurnConstraint | None] | None = None) -> list[str]:
        import ray

        keys = None if self.cache_key is None else [self.cache_key + (f"#{i}" if i else "") for i in range(len(prompts))]
        keep = None if keys is None else [self.keep_cache] * len(prompts)
        return ray.get(self.server.generate.remote(prompts, params, cache_keys=keys, keep_caches=keep,
                                                   constraints=constraints))
