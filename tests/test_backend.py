"""Transformers backend, default model conversion, and the micro-batching model server."""

import asyncio

import pytest
import torch

from interplay.backends.base import GenerationParams, cut_at_stop
from interplay.backends.transformers_backend import TransformersBackend
from interplay.runtime.model_server import ModelServer


def test_cut_at_stop():
    assert cut_at_stop("<response>a</response> junk </response>", ("</response>",)) == "<response>a</response>"
    assert cut_at_stop("no stop here", ("</response>",)) == "no stop here"
    assert cut_at_stop("x END y STOP", ("STOP", "END")) == "x END"


@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir):
    return TransformersBackend(str(tiny_model_dir), dtype="float32")


def test_batched_left_padded_generation_matches_one_by_one(tiny_backend):
    prompts = ["Hello there, how are", "A much longer prompt about movies and the people who watch them", "Hi"]
    params = GenerationParams(max_new_tokens=12, stop=())
    assert tiny_backend.tokenizer.padding_side == "left"
    batched = tiny_backend.generate(prompts, params)
    single = [tiny_backend.generate([p], params)[0] for p in prompts]
    assert batched == single
    assert all(len(tiny_backend.tokenizer(o, add_special_tokens=False)["input_ids"]) <= 12 for o in batched)


def test_sampling_is_seeded(tiny_backend):
    p = GenerationParams(max_new_tokens=10, temperature=1.0, seed=5, stop=())
    a = tiny_backend.generate(["Once upon a time"], p)
    assert a == tiny_backend.generate(["Once upon a time"], p)
    others = {tiny_backend.generate(["Once upon a time"], p.model_copy(update={"seed": s}))[0] for s in range(6, 10)}
    assert len(others | set(a)) > 1


class CountingBackend:
    """Wraps a real backend and records the size of every batch it is given."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []

    def generate(self, prompts, params):
        self.batches.append(len(prompts))
        return self.inner.generate(prompts, params)


def test_model_server_batches_concurrent_requests(tiny_backend):
    counting = CountingBackend(tiny_backend)
    server = ModelServer(None, max_batch=8, batch_wait_ms=50, backend_factory=lambda: counting)
    params = GenerationParams(max_new_tokens=6, stop=())
    prompts = [f"Prompt number {i} about films" for i in range(8)]

    async def many():
        return await asyncio.gather(*(server.generate([p], params) for p in prompts))

    results = asyncio.run(many())
    assert [r[0] for r in results] == [tiny_backend.generate([p], params)[0] for p in prompts]
    assert max(counting.batches) > 1 and sum(counting.batches) == 8


def test_model_server_collects_a_trickle_into_one_batch(tiny_backend):
    """Requests arriving one by one (the next turns of a wave of episodes) land in one batch while
    the gaps stay under batch_wait_ms, however long the trickle; max_wait_ms bounds the wait."""
    params = GenerationParams(max_new_tokens=2, stop=())

    def batches(max_wait_ms: float) -> list[int]:
        counting = CountingBackend(tiny_backend)
        server = ModelServer(None, max_batch=16, batch_wait_ms=100, max_wait_ms=max_wait_ms,
                             backend_factory=lambda: counting)

        async def one(i):
            await asyncio.sleep(0.025 * i)  # 8 requests over 175 ms: longer than batch_wait_ms
            return await server.generate([f"Prompt {i}"], params)

        async def trickle():
            return await asyncio.gather(*(one(i) for i in range(8)))

        asyncio.run(trickle())
        return counting.batches

    assert batches(max_wait_ms=5000) == [8]
    split = batches(max_wait_ms=80)
    assert len(split) >= 2 and sum(split) == 8


def test_model_server_never_mixes_settings(tiny_backend):
    counting = CountingBackend(tiny_backend)
    server = ModelServer(None, max_batch=8, batch_wait_ms=50, backend_factory=lambda: counting)
    short, long = GenerationParams(max_new_tokens=2, stop=()), GenerationParams(max_new_tokens=8, stop=())

    async def mixed():
        return await asyncio.gather(*(server.generate(["same prompt"], short if i % 2 else long) for i in range(6)))

    out = asyncio.run(mixed())
    assert out[1] == tiny_backend.generate(["same prompt"], short) and out[0] == tiny_backend.generate(["same prompt"], long)
    assert counting.batches == [3, 3]


def test_model_server_reports_backend_failure_to_every_waiter():
    class Broken:
        def generate(self, prompts, params):
            raise RuntimeError("out of memory")

    server = ModelServer(None, max_batch=4, backend_factory=Broken)

    async def go():
        return await asyncio.gather(*(server.generate(["x"], GenerationParams()) for _ in range(3)), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(go()))


@pytest.mark.slow
def test_default_model_converts_and_generates():
    from interplay.backends.default_model import default_model_path

    path = default_model_path()
    assert (path / "config.json").exists() and (path / "model.safetensors").exists()
    backend = TransformersBackend(None, dtype="float32")
    assert backend.model_path == str(path) and backend.has_chat_template
    assert sum(p.numel() for p in backend.model.parameters()) > 100_000_000
    msgs = [{"role": "user", "content": "Name a famous movie."}]
    prompt = backend.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    out = backend.generate([prompt], GenerationParams(max_new_tokens=16, stop=()))[0]
    assert len(out.split()) >= 3 and "<|im_end|>" not in out  # real words, special tokens removed
    with torch.no_grad():  # a trained model: low loss on fluent English, high on shuffled tokens
        ids = backend.tokenizer("The cat sat on the mat and looked out of the window.", return_tensors="pt").input_ids
        fluent = backend.model(ids, labels=ids).loss.item()
        shuffled = ids[:, torch.randperm(ids.shape[1], generator=torch.Generator().manual_seed(0))]
        assert fluent < backend.model(shuffled, labels=shuffled).loss.item() - 1.0


def test_prompt_tokenizer_renders_like_auto_tokenizer_without_torch(tiny_model_dir):
    """The agent host's tokenizer renders the same prompts and ids as AutoTokenizer, and loading
    it does not import torch (what keeps the host small)."""
    import subprocess
    import sys

    from transformers import AutoTokenizer

    from interplay.episode import build_user_view
    from interplay.prompting import build_messages, load_prompt_tokenizer, render_prompt
    from interplay.protocol import Role
    from interplay.simulation_data import load_demo

    auto, light = AutoTokenizer.from_pretrained(tiny_model_dir), load_prompt_tokenizer(str(tiny_model_dir))
    spec = load_demo().episodes[0]
    msgs = build_messages(Role.USER, build_user_view("e0", spec), [])
    prompt = render_prompt(light, msgs)
    assert prompt == render_prompt(auto, msgs) and "<|im_start|>system" in prompt
    assert light(prompt)["input_ids"] == auto(prompt)["input_ids"]
    code = ("import sys; from interplay.prompting import load_prompt_tokenizer; "
            f"t = load_prompt_tokenizer({str(tiny_model_dir)!r}); assert t.chat_template; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
