"""Clients of OpenAI-compatible servers, one per (server, model) in a process, and the
``MODEL@URL`` argument that names one."""

from __future__ import annotations

def split_http(arg: str | None) -> tuple[str | None, str | None]:
    """``MODEL@http://host:port/v1`` -> (MODEL, URL); anything else -> (arg, None)."""
    if arg and "@http" in arg:
        model, _, url = arg.partition("@")
        if not model:
            raise ValueError(f"zero-shot spec needs a model name before '@': {arg!r}")
        return model, url
    return arg, None


_CLIENTS: dict[tuple[str, str], object] = {}


def http_backend(url: str, model: str):
    """One OpenAI-compatible client per (server, model) in this process. Settings from the
    environment: INTERPLAY_HTTP_TIMEOUT (s, default 120), INTERPLAY_HTTP_RETRIES (3),
    INTERPLAY_HTTP_CONCURRENCY (8), INTERPLAY_API_KEY_ENV (name of the key's variable, OPENAI_API_KEY)."""
    import os

    from interplay.backends.registry import create_backend

    key = (url, model)
    if key not in _CLIENTS:
        _CLIENTS[key] = create_backend(
            "openai", model, base_url=url, api_key_env=os.environ.get("INTERPLAY_API_KEY_ENV", "OPENAI_API_KEY"),
            timeout_s=float(os.environ.get("INTERPLAY_HTTP_TIMEOUT", 120)),
            max_retries=int(os.environ.get("INTERPLAY_HTTP_RETRIES", 3)),
            max_concurrency=int(os.environ.get("INTERPLAY_HTTP_CONCURRENCY", 8)))
    return _CLIENTS[key]
