"""What each built-in backend can do, in one place: the registry declares them (known before a
backend is created, without importing torch or vLLM) and the backend classes carry the same."""

from interplay.backends.base import BackendCapabilities

TRANSFORMERS = BackendCapabilities(constraints=True, ranking=True, scoring=True, request_keys=True, row_params=True,
                                   prefix_cache=True, thread_safe=True, local_checkpoints=True, stats=True)
VLLM = BackendCapabilities(constraints=True, row_params=True, continuous_batching=True)
OPENAI = BackendCapabilities(constraints=True, chat=True, thread_safe=True)
