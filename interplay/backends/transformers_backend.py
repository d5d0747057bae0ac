"""Local generation with transformers: batched, left-padded, stopping after ``</response>``.

Generation runs :func:`interplay.backends.kv_reuse.generate_reusing_prefix`: prompts are
prefilled a few at a time, then the batch decodes together (left-padded caches, finished rows
dropped). With ``prefix_cache_mb > 0`` and a cache key per prompt (one per episode and role), the
prefill covers only the tokens that conversation's stored KV cache does not (kept as float16 for a
float32 model unless ``prefix_cache_dtype="model"``). Greedy results equal ``model.generate``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import tempfile
import threading
import weakref

import torch

from interplay.backends.builtin_capabilities import TRANSFORMERS
from interplay.backends.base import GenerationParams, cut_at_stop
from interplay.backends.default_model import resolve_model_path
from interplay.backends.continuation_scoring import ScoringPrefixCache, score_continuations
from interplay.backends.kv_reuse import generate_reusing_prefix
from interplay.backends.prefix_store import PrefixKVStore
from interplay.protocol import STRUCTURAL_TOKENS

#: MiB of recently scored prompts' KV kept for reuse by the next scored prompts (fp32, exact)
SCORE_CACHE_MB = 1024

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_dtype(dtype: str) -> torch.dtype:
    """``auto`` -> bfloat16 (float16 without bf16) on a GPU, float32 on a CPU.

    On CPUs, bf16 was measured no faster for batched simulation here (docs/performance.md) and
    makes greedy results depend on the batch (batch-shape-dependent rounding flips near-tied
    tokens): ask for ``bfloat16`` explicitly when memory matters more than reproducibility."""
    if dtype != "auto":
        return _DTYPES[dtype]
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _load_trim():
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


_malloc_trim = _load_trim()


def _return_freed_memory() -> None:
    """Hand memory freed by the last batch back to the OS (glibc only; a no-op elsewhere).

    Each batch allocates and frees hundreds of MB of cache buffers; glibc keeps freed heap pages
    resident, so the server's RSS crept up by the fragmentation of every earlier batch."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _store_stats(store: PrefixKVStore | None) -> dict:
    """A KV store's counters, entries and MiB held (empty when there is no store)."""
    if store is None:
        return {}
    return {**store.stats, "entries": len(store.entries), "used_mb": round(store.used_bytes / 2**20, 1)}


class TransformersBackend:
    """A causal LM from a HF id or local path (``None`` = the default model)."""

    def __init__(self, model: str | None = None, dtype: str = "auto", device: str | None = None,
                 num_threads: int | None = None, prefix_cache_mb: float = 0.0,
                 prefix_cache_dtype: str = "float16", score_cache_mb: float = SCORE_CACHE_MB,
                 prefix_cache_spill: bool = False):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if num_threads:
            torch.set_num_threads(num_threads)
        self.model_path = resolve_model_path(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        from interplay.backends.adapters import is_adapter, load_adapter_model

        if is_adapter(self.model_path):  # a LoRA adapter folder: merged into its base once, here
            self.model, self.tokenizer = load_adapter_model(self.model_path, pick_dtype(dtype))
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=pick_dtype(dtype))
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.to(self.device).eval()
        self._strip = [t for t in self.tokenizer.all_special_tokens if t and t not in STRUCTURAL_TOKENS]
        self._lock = threading.Lock()
        self._constrainer = None
        self._tries: dict = {}  # catalogue key -> TitleTrie (ranking)
        # kept KV of a float32 model is stored as float16 (half the memory; agreement measured in
        # docs/performance.md); "model" keeps the model's dtype (exact reuse)
        store_dtype = None
        if prefix_cache_dtype != "model" and self.model.dtype == torch.float32:
            store_dtype = _DTYPES[prefix_cache_dtype]
        self.prefix_store = None
        if prefix_cache_mb > 0:
            spill = None
            if prefix_cache_spill:  # kept conversations in files: the page cache holds them, not this process
                spill = tempfile.mkdtemp(prefix="interplay-kv-")
                weakref.finalize(self, shutil.rmtree, spill, True)
            self.prefix_store = PrefixKVStore(int(prefix_cache_mb * 2**20), store_dtype, spill_dir=spill)
        # scored prompts (decisions, probes, turn likelihoods) reuse each other's prefixes
        self.score_cache = ScoringPrefixCache(int(score_cache_mb * 2**20)) if score_cache_mb > 0 else None
        #: where generation time went, summed over calls (see :func:`generate_reusing_prefix`)
        self.decode_timing: dict = {}

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    #: constrained decoding, title ranking, continuation scoring, per-request KV reuse, seeds and settings
    capabilities = TRANSFORMERS

    @property
    def constrainer(self):
        """The :class:`~interplay.backends.constrained.TurnConstrainer` of this model's tokenizer
        (built on first use)."""
        if self._constrainer is None:
            from interplay.backends.constrained import TurnConstrainer

            self._constrainer = TurnConstrainer(self.tokenizer, self.model.config.vocab_size)
        return self._constrainer

    def register_catalogue(self, key: str, titles: list[str]) -> None:
        """Titles that constrained turns may name under ``TurnConstraint.catalogue == key``."""
        with self._lock:
            self.constrainer.register_catalogue(key, titles)

    def validate_constraint(self, constraint) -> None:
        """Raise :class:`~interplay.turn_grammar.GrammarError` if no legal turn satisfies it."""
        with self._lock:
            self.constrainer.validate(constraint)

    def generate(self, prompts: list[str], params: GenerationParams,
                 cache_keys: list[str | None] | None = None, seeds: list[int] | None = None,
                 keep_caches: list[bool] | None = None, constraints: list | None = None,
                 row_params: list[GenerationParams] | None = None) -> list[str]:
        """Complete each prompt; greedy when ``params.temperature == 0``, else sampled from each
        prompt's own seed (``seeds``, default ``params.seed``), so a completion does not depend on
        the batch it ran in. ``row_params[i]`` (default ``params``) are prompt ``i``'s own turn cap,
        sampling and repetition controls (:mod:`interplay.backends.decoding_controls`). ``cache_keys`` name each prompt's conversation for KV reuse (ignored
        when the prefix cache is off); ``keep_caches[i]`` false reuses prompt ``i``'s stored cache
        but does not store it back (its conversation will not continue). ``constraints[i]`` (a
        :class:`~interplay.backends.constrained.TurnConstraint` or None) restricts prompt ``i``
        to legal turns."""
        if not prompts:
            return []
        keys = list(cache_keys) if cache_keys is not None else [None] * len(prompts)
        with self._lock, torch.inference_mode():
            constrainer = self.constrainer if constraints is not None and any(constraints) else None
            ids = generate_reusing_prefix(self.model, self.tokenizer, prompts, params, keys, self.prefix_store, seeds,
                                          keep_caches, constraints, constrainer, timing=self.decode_timing,
                                          row_params=row_params)
        texts = [self.tokenizer.decode(t, skip_special_tokens=False) for t in ids]
        if self.device == "cpu":
            _return_freed_memory()
        return [cut_at_stop(self._clean(t), params.stop) for t in texts]

    def release(self, cache_keys: list[str]) -> None:
        """Drop the stored KV of finished conversations (``key`` and its ``key#i`` siblings)."""
        if self.prefix_store is not None:
            with self._lock:
                for key in cache_keys:
                    for stored in [k for k in self.prefix_store.entries if k == key or k.startswith(key + "#")]:
                        self.prefix_store.drop(stored)

    def rank_titles(self, prompts: list[str], catalogue: str, k: int, beam: int = 0) -> list[list[str]]:
        """For each prompt (ending just after ``<movie_title>``), the ``k`` titles of the
        registered catalogue with the highest log-likelihood there (title and ``</movie_title>``),
        best first: exact, by best-first search over the catalogue's token trie, or approximate
        by a beam of ``beam`` prefixes per token depth when ``beam > 0``
        (:mod:`interplay.backends.title_ranking`)."""
        from interplay.backends.title_ranking import TitleTrie, beam_rank_titles, rank_titles

        with self._lock, torch.inference_mode():
            if catalogue not in self._tries:
                if catalogue not in self.constrainer.catalogues:
                    raise ValueError(f"catalogue {catalogue!r} was never registered with this backend")
                self._tries[catalogue] = TitleTrie(self.tokenizer, self.constrainer.catalogues[catalogue])
            trie = self._tries[catalogue]
            out = []
            for prompt in prompts:
                ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
                result = (beam_rank_titles(self.model, ids, trie, k=k, beam=beam) if beam
                          else rank_titles(self.model, ids, trie, k=k))
                out.append(result.titles)
        if self.device == "cpu":
            _return_freed_memory()
        return out

    def score_continuations(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        """For each prompt, the log-likelihood of each of its continuations (one prompt pass each;
        :mod:`interplay.backends.continuation_scoring`)."""
        with self._lock:
            out = [score_continuations(self.model, self.tokenizer, p, c, self.score_cache)
                   for p, c in zip(prompts, continuations)]
        if self.device == "cpu":
            _return_freed_memory()
        return out

    def stats(self) -> dict:
        """This backend's counters by section, the sections with something to say only
        (``BackendCapabilities.stats``; the model server adds them to its own)."""
        sections = {"generation": self.generation_stats(), "score_cache": self.score_cache_stats(),
                    "constrained": self.constraint_stats()}
        if self.prefix_store is not None:
            sections["prefix_cache"] = self.prefix_cache_stats()
        return {k: v for k, v in sections.items() if v}

    def constraint_stats(self) -> dict:
        """Constrained decoding: seconds spent computing token masks, rows masked, grammars
        compiled and seconds compiling (empty before the first constrained request)."""
        if self._constrainer is None:
            return {}
        st = dict(self._constrainer.stats)
        st["mask_ms_per_token"] = round(1000 * st["mask_s"] / st["masked_tokens"], 4) if st["masked_tokens"] else None
        return st

    def generation_stats(self) -> dict:
        """Seconds of prefill, decode steps, rows leaving batches and the rest, decode steps, the
        mean number of rows per decode step (how full the batches stayed) and the mean number of
        tokens a decoded row attended to."""
        t = {k: round(v, 3) if isinstance(v, float) else v for k, v in self.decode_timing.items()}
        if t.get("steps"):
            t["mean_rows_per_step"] = round(t["row_steps"] / t["steps"], 2)
            t["mean_context"] = round(t["context_row_steps"] / t["row_steps"], 1)
        return t

    def prefix_cache_stats(self) -> dict:
        """Lookups, hits, reused and prefilled prompt tokens, evictions, bytes held."""
        return _store_stats(self.prefix_store)

    def score_cache_stats(self) -> dict:
        """The scoring prefix cache's lookups, hits, reused and prefilled prompt tokens, evictions."""
        return _store_stats(self.score_cache.store if self.score_cache is not None else None)

    def _clean(self, text: str) -> str:
        for tok in self._strip:
            text = text.replace(tok, "")
        return text
