"""Log-likelihood of short continuations after a shared prompt, in one prompt pass.

Used to read a decision without generating it: the probability of each legal action after a
user's observation (``<accept>`` vs ``<feedback>`` ...). The prompt is tokenized alone and run
once with a KV cache, as generation runs it; each continuation is tokenized on its own, as the
tokens generation would append (so no BPE merge crosses the boundary: after ``...<action>`` the
continuation ``<accept>`` is scored as ``<``, ``accept``, ``>``, which is what a constrained
decoder can emit there). The cache is repeated once per continuation and the continuations are
scored in one padded batch.
"""

from __future__ import annotations


def score_continuations(model, tokenizer, prompt: str, continuations: list[str]) -> list[float]:
    """Sum of the log-probabilities of each continuation's tokens after ``prompt``."""
    import torch

    if not continuations:
        return []
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    tails = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
    if not prompt_ids or not all(tails):
        raise ValueError("score_continuations needs a non-empty prompt and non-empty continuations")
    shared = len(prompt_ids)
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # predicts each tail's first token
        width = max(len(t) for t in tails)
        scores = [float(first[t[0]]) for t in tails]
        if width > 1:
            cache = out.past_key_values
            cache.batch_repeat_interleave(len(tails))
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            ids = torch.tensor([t + [pad] * (width - len(t)) for t in tails], device=device)
            mask = torch.tensor([[1] * (shared + len(t)) + [0] * (width - len(t)) for t in tails], device=device)
            pos = torch.arange(shared, shared + width, device=device).expand(len(tails), -1)
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, position_ids=pos,
                                           past_key_values=cache, use_cache=True).logits.float(), dim=-1)
            for i, t in enumerate(tails):
                scores[i] += float(sum(logp[i, j, t[j + 1]] for j in range(len(t) - 1)))
    return scores
