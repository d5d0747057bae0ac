"""OpenAI-compatible chat-completions backend (``vllm serve``, ``transformers serve``, TGI, hosted APIs).

This is how a 32B/70B model on a GPU box serves agents running on a CPU driver. The official
``openai`` client does the HTTP: a per-request ``timeout_s``, and bounded retries with exponential
backoff on connection errors, timeouts, 408/409/429 and 5xx (``max_retries``). On top of it a
process-wide semaphore caps concurrent requests per server (``max_concurrency``). When retries
are spent the error propagates: the environment ends that episode with ``agent_error`` and the
run goes on (``--resume`` re-runs such episodes).

Decoding settings: ``temperature``, ``top_p`` and ``seed`` are chat-completions fields;
``repetition_penalty`` is not (OpenAI's ``frequency_penalty`` is a different, additive penalty),
so it is sent as the extra body field ``repetition_penalty`` that vLLM's and TGI's servers read,
until a server refuses it (400/422: dropped from then on, ``repetition_penalty_supported`` false).
The n-gram bans (``no_repeat_ngram``, ``partner_no_repeat_ngram``, ``own_no_repeat_ngram``) have
no field in these APIs and are not applied over HTTP.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from interplay.backends.builtin_capabilities import OPENAI
from interplay.backends.base import GenerationParams, TurnConstraint, constraint_titles, cut_at_stop
from interplay.turn_grammar import conforms, turn_grammar

_LIMITS: dict[str, threading.BoundedSemaphore] = {}
_LIMITS_LOCK = threading.Lock()


def _limit(base_url: str, n: int) -> threading.BoundedSemaphore:
    with _LIMITS_LOCK:
        return _LIMITS.setdefault(base_url, threading.BoundedSemaphore(n))


class OpenAIChatBackend:
    """Chat completions of ``model`` at ``base_url`` (e.g. ``http://gpu-box:8000/v1``).

    The API key is read from the environment variable ``api_key_env`` (servers without auth
    accept any key; ``EMPTY`` is sent when the variable is unset).
    """

    #: a chat API; requests may carry a TurnConstraint: its grammar is sent to the server (vLLM's
    #: ``structured_outputs.grammar``, llguidance's Lark dialect) until the server shows it ignores it
    capabilities = OPENAI

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 120.0,
                 max_retries: int = 3, max_concurrency: int = 8):
        from openai import OpenAI

        self.base_url, self.model = base_url.rstrip("/"), model
        self.client = OpenAI(base_url=self.base_url, api_key=os.environ.get(api_key_env) or "EMPTY",
                             timeout=timeout_s, max_retries=max_retries)
        self._sem = _limit(self.base_url, max_concurrency)
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="openai-http")
        self.requests = 0
        self.failures = 0
        self.seconds = 0.0
        #: None: not known yet; True: the server applied every grammar sent; False: it refused or
        #: ignored one, so turns are parsed afterwards ("parse-after") from then on
        self.grammar_supported: bool | None = None
        self.grammar_field = os.environ.get("INTERPLAY_HTTP_GRAMMAR_FIELD", "structured_outputs")
        #: None: not known yet; False: the server refused the extra field ``repetition_penalty``
        self.repetition_penalty_supported: bool | None = None
        self.catalogues: dict[str, list[str]] = {}
        self._grammars: dict[TurnConstraint, str] = {}

    def register_catalogue(self, key: str, titles: list[str]) -> None:
        """Titles that constrained turns may name under ``TurnConstraint.catalogue == key``."""
        self.catalogues.setdefault(key, list(titles))

    def _grammar(self, c: TurnConstraint) -> tuple[str, list[str] | None]:
        titles = constraint_titles(c, self.catalogues)  # None: any title
        if c.narrowed:  # a per-turn title list or exclusions: compiled for this turn only
            return turn_grammar(c.actions, titles, c.role), titles
        if c not in self._grammars:
            self._grammars[c] = turn_grammar(c.actions, titles, c.role)
        return self._grammars[c], titles

    def chat(self, conversations: list[list[dict]], params: GenerationParams,
             constraints: list[TurnConstraint | None] | None = None) -> list[str]:
        """One completion per conversation (concurrently, within the concurrency cap); a
        constraint sends its turn grammar while the server is not known to ignore grammars."""
        cons = constraints or [None] * len(conversations)
        futures = [self._pool.submit(self._one, messages, params, c) for messages, c in zip(conversations, cons)]
        return [f.result() for f in futures]

    def _one(self, messages: list[dict], params: GenerationParams, constraint: TurnConstraint | None = None) -> str:
        kwargs: dict = dict(model=self.model, messages=messages, max_tokens=params.max_new_tokens,
                            temperature=params.temperature, seed=params.seed)
        if params.temperature > 0:
            kwargs["top_p"] = params.top_p
        if params.repetition_penalty != 1.0 and self.repetition_penalty_supported is not False:
            kwargs["extra_body"] = {"repetition_penalty": params.repetition_penalty}
        if constraint is not None and self.grammar_supported is not False and not constraint.prefill:
            import openai

            grammar, titles = self._grammar(constraint)
            field = {"structured_outputs": {"grammar": grammar}} if self.grammar_field == "structured_outputs" \
                else {self.grammar_field: grammar}
            try:
                text, finish = self._create({**kwargs, "extra_body": {**kwargs.get("extra_body", {}), **field}}, params)
            except (openai.BadRequestError, openai.UnprocessableEntityError):
                self.grammar_supported = False  # the server refuses the field: parse afterwards
                return self._create(kwargs, params)[0]
            if conforms(text, constraint.actions, titles, constraint.role):
                self.grammar_supported = self.grammar_supported if self.grammar_supported is not None else True
            elif finish != "length":  # a turn cut by max_tokens says nothing about the grammar
                self.grammar_supported = False  # it took the field but did not apply it
            return text
        return self._create(kwargs, params)[0]

    def _create(self, kwargs: dict, params: GenerationParams) -> tuple[str, str | None]:
        """The completion's text (cut after a stop string) and its finish reason; a server that
        refuses the extra field ``repetition_penalty`` is asked again without it (and from then on)."""
        import openai

        if "repetition_penalty" not in kwargs.get("extra_body", {}):
            return self._create_once(kwargs, params)
        try:
            out = self._create_once(kwargs, params)
        except (openai.BadRequestError, openai.UnprocessableEntityError):
            self.repetition_penalty_supported = False
            extra = {k: v for k, v in kwargs["extra_body"].items() if k != "repetition_penalty"}
            rest = {k: v for k, v in kwargs.items() if k != "extra_body"}
            return self._create_once({**rest, **({"extra_body": extra} if extra else {})}, params)
        self.repetition_penalty_supported = True
        return out

    def _create_once(self, kwargs: dict, params: GenerationParams) -> tuple[str, str | None]:
        """The completion's text (cut after a stop string) and its finish reason."""
        # stop strings are applied here, not sent: servers drop a matched stop string and report
        # the same finish_reason as for end-of-sequence, so "</response>" could not be restored
        # faithfully (measured: a reply ending at EOS without the tag would then parse as clean)
        with self._sem:
            t0 = time.perf_counter()
            try:
                resp = self.client.chat.completions.create(**kwargs)
            except Exception:
                self.failures += 1
                raise
            finally:
                self.requests += 1
                self.seconds += time.perf_counter() - t0
        choice = resp.choices[0]
        return cut_at_stop(choice.message.content or "", params.stop), choice.finish_reason

    def generate(self, prompts: list[str], params: GenerationParams,
                 constraints: list[TurnConstraint | None] | None = None) -> list[str]:
        """Plain prompts go as one user message each (agents send chat messages instead)."""
        return self.chat([[{"role": "user", "content": p}] for p in prompts], params, constraints)

    def stats(self) -> dict:
        return {"base_url": self.base_url, "model": self.model, "requests": self.requests,
                "failures": self.failures, "request_seconds": round(self.seconds, 3),
                "grammar_supported": self.grammar_supported,
                "repetition_penalty_supported": self.repetition_penalty_supported}
