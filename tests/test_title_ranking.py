"""Top-k title ranking over the title trie (interplay.backends.title_ranking), exact branch and bound
and beam search, against brute force."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from interplay.backends.title_ranking import TitleTrie, beam_rank_titles, rank_titles

PROMPT = "<|im_start|>assistant\nYou may enjoy <movie_title>"
CLOSE = "</movie_title>"
TOL = 1e-4

SMALL_CATALOGUE = [
    "Heat", "Heat (1995)", "Heat 2 (2026)", "Heat (1995)",  # prefixes of each other; a duplicate
    "Heat</movie_title>X",  # its sequence extends the complete sequence of "Heat"
    "Amélie (2001)", "東京物語 (1953)", "Léon: The Professional (1994)", "8½ (1963)", "",
    "Alien (1979)", "Aliens (1986)", "Alien³ (1992)", "Toy Story (1995)", "Toy Story 2 (1999)",
    "Toy Story 3 (2010)", "The Matrix (1999)", "The Matrix Reloaded (2003)", "The Godfather (1972)",
    "The Godfather: Part II (1974)", "Up (2009)", "Her (2013)", "Jaws (1975)", "Jaws 2 (1978)",
    "Casablanca (1942)", "Vertigo (1958)", "Psycho (1960)", "Psycho (1998)", "Se7en (1995)",
    "Fargo (1996)", "Memento (2000)", "Inception (2010)", "Interstellar (2014)", "Parasite (2019)",
    "Oldboy (2003)", "Amores perros (2000)", "La Haine (1995)", "Das Boot (1981)", "Zoolander (2001)",
    "M (1931)",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread for this module's tiny tensors (restored after): with two, OpenMP
    hand-offs made the search ~10x slower on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def prompt_ids(tok) -> list[int]:
    return tok(PROMPT, add_special_tokens=False)["input_ids"]


def brute_force(model, tok, prompt_ids: list[int], titles: list[str], batch: int = 32) -> dict[str, float]:
    """Each title's log-likelihood from plain full forward passes over prompt + sequence (no KV
    cache; right-padded batches, keeping only the logits of the title's positions)."""
    seqs = {t: tok(t + CLOSE, add_special_tokens=False)["input_ids"] for t in dict.fromkeys(titles)}
    items, p, out = list(seqs.items()), len(prompt_ids), {}
    with torch.inference_mode():
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            width = max(len(s) for _, s in chunk)
            ids = torch.zeros((len(chunk), p + width), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, (_, s) in enumerate(chunk):
                ids[r, :p + len(s)] = torch.tensor(prompt_ids + s)
                mask[r, :p + len(s)] = 1
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=width + 1).logits
            logits = logits[:, :-1].float()  # row j predicts title token j
            # logsumexp, not float32 log_softmax: the latter drifts ~1e-4 on peaked distributions
            targets = torch.tensor([s + [0] * (width - len(s)) for _, s in chunk])
            lp = logits.gather(-1, targets.unsqueeze(-1))[..., 0] - logits.logsumexp(-1)
            for r, (t, s) in enumerate(chunk):
                out[t] = float(lp[r, :len(s)].double().sum())
    return out


def assert_top_k(result, truth: dict[str, float], titles: list[str], k: int) -> None:
    """``result`` is a correct top k: each returned title's score is its true score, the score
    sequence equals the true top-k sequence (so titles differ only within ties), and no title is
    returned more often than the catalogue holds it."""
    expected = sorted((truth[t] for t in titles), reverse=True)[:k]
    assert len(result.titles) == len(result.scores) == len(expected)
    for t, s in zip(result.titles, result.scores):
        assert s == pytest.approx(truth[t], abs=TOL), t
    assert result.scores == pytest.approx(expected, abs=TOL)
    assert not Counter(result.titles) - Counter(titles)


@pytest.fixture(scope="module")
def small_truth(model, tok, prompt_ids) -> dict[str, float]:
    """Each small-catalogue title's log-likelihood, one full forward pass per title (no padding)."""
    truth = {}
    with torch.inference_mode():
        for t in dict.fromkeys(SMALL_CATALOGUE):
            seq = tok(t + CLOSE, add_special_tokens=False)["input_ids"]
            logits = model(input_ids=torch.tensor([prompt_ids + seq])).logits[0, len(prompt_ids) - 1:-1].double()
            truth[t] = float(logits.log_softmax(-1)[torch.arange(len(seq)), torch.tensor(seq)].sum())
    return truth


def test_batched_brute_force_agrees(model, tok, prompt_ids, small_truth):
    """The batched helper used on the large catalogue scores like one pass per title."""
    assert brute_force(model, tok, prompt_ids, SMALL_CATALOGUE, batch=16) == pytest.approx(small_truth, abs=TOL)


@pytest.mark.parametrize("k", [5, 40])
def test_matches_brute_force(model, tok, prompt_ids, small_truth, k):
    truth, trie = small_truth, TitleTrie(tok, SMALL_CATALOGUE)
    result = rank_titles(model, prompt_ids, trie, k=k, batch_size=8)
    assert result.exact
    assert_top_k(result, truth, SMALL_CATALOGUE, k)
    if k == 40:  # every title, the duplicate twice
        assert Counter(result.titles) == Counter(SMALL_CATALOGUE)


class BigramBiased(torch.nn.Module):
    """The tiny random model plus a fixed bigram logit bias (next-token logits += bias[current
    token]): a random 2-layer model's next-token distributions are close to uniform, so no title
    is much likelier than another and nothing can be pruned; with the bias it behaves like a
    trained LM on this catalogue (the close tag after ')' is near certain, some words are much
    likelier than others). Same call interface as the model; the KV/mask path stays the model's."""

    def __init__(self, inner, tok, titles: list[str], prompt_ids: list[int], seed: int = 0):
        super().__init__()
        self.inner = inner
        rng = random.Random(seed)
        pairs = set()
        for t in titles:
            seq = [prompt_ids[-1]] + tok(t + CLOSE, add_special_tokens=False)["input_ids"]
            pairs.update(zip(seq, seq[1:]))
        rows, cols = sorted({a for a, _ in pairs}), sorted({b for _, b in pairs})
        self.row_of = torch.zeros(inner.config.vocab_size, dtype=torch.long)  # 0: no bias
        self.row_of[rows] = torch.arange(1, len(rows) + 1)
        self.cols = torch.tensor(cols)  # the only tokens ever biased
        self.bias = torch.zeros((len(rows) + 1, len(cols)))
        fanout = Counter(a for a, _ in pairs)
        for a, b in sorted(pairs):  # a sole continuation (the close tag's tokens) is near certain
            self.bias[self.row_of[a], cols.index(b)] = 30.0 if fanout[a] == 1 else rng.uniform(8.0, 16.0)

    @property
    def device(self):
        return self.inner.device

    def forward(self, input_ids, logits_to_keep=0, **kwargs):
        out = self.inner(input_ids=input_ids, logits_to_keep=logits_to_keep, **kwargs)
        kept = input_ids[:, -out.logits.shape[1]:]
        out.logits[..., self.cols] += self.bias[self.row_of[kept]]
        return out


@pytest.fixture(scope="module")
def large(model, tok, prompt_ids):
    """~2000 synthetic titles, the biased model, the trie and every title's brute-force score."""
    words = ("Red Blue Night Day Lost City Dark Star River Moon Last First Silent Wild Golden Broken "
             "Iron Secret Cold Hidden").split()
    nouns = "Road Heart Dream Game House War Sky Sea King Light".split()
    titles = [f"The {a} {b} ({y})" for a in words for b in nouns for y in range(1990, 2000)]
    titles += ["Heat", "Heat (1995)", "Amélie (2001)", "The Red Road (1990)"]  # the last one twice
    random.Random(0).shuffle(titles)
    biased = BigramBiased(model, tok, titles, prompt_ids).eval()
    return titles, biased, TitleTrie(tok, titles), brute_force(biased, tok, prompt_ids, titles)


def test_prunes_and_stays_exact_on_a_large_catalogue(large, prompt_ids):
    titles, biased, trie, truth = large
    result = rank_titles(biased, prompt_ids, trie, k=10)
    assert result.exact
    assert_top_k(result, truth, titles, 10)
    # what the search computed, not how long it took: a fraction of the trie, few batched passes
    assert len(trie) > 5 * len(titles)
    assert 1 < result.expanded < len(titles) / 2
    assert 1 < result.forward_passes < len(titles) / 50


def test_max_expansions_stops_early(large, prompt_ids):
    titles, biased, trie, truth = large
    for cap in (3, 40):
        result = rank_titles(biased, prompt_ids, trie, k=10, batch_size=4, max_expansions=cap)
        assert not result.exact
        assert result.expanded <= cap
        assert len(result.titles) == len(result.scores) <= 10
        for t, s in zip(result.titles, result.scores):  # what it did complete is scored right
            assert s == pytest.approx(truth[t], abs=TOL)
        assert result.scores == sorted(result.scores, reverse=True)


def test_beam_wide_enough_is_exact(model, tok, prompt_ids, small_truth):
    """A beam at least as wide as any trie depth's node count never drops a prefix: the exact top
    k, certified, on the small catalogue of prefixes, duplicates and unicode."""
    trie = TitleTrie(tok, SMALL_CATALOGUE)
    result = beam_rank_titles(model, prompt_ids, trie, k=40, beam=len(trie))
    assert result.exact
    assert_top_k(result, small_truth, SMALL_CATALOGUE, 40)
    assert Counter(result.titles) == Counter(SMALL_CATALOGUE)


def test_narrow_beam_scores_right_and_certifies_honestly(large, prompt_ids):
    """On ~2000 titles a narrow beam expands a bounded number of nodes (depth x beam); each title it
    returns carries its true score, and it claims exactness only when its top k is the true top k."""
    titles, biased, trie, truth = large
    true_top = sorted(truth.values(), reverse=True)
    depth = max(len(trie.path(n)) for n in range(len(trie)))
    for beam in (2, 8, 32):
        result = beam_rank_titles(biased, prompt_ids, trie, k=10, beam=beam)
        assert result.expanded <= 1 + depth * max(beam, 10)  # the beam is at least k wide
        assert len(result.titles) == 10
        assert result.scores == sorted(result.scores, reverse=True)
        for t, s in zip(result.titles, result.scores):
            assert s == pytest.approx(truth[t], abs=TOL)
        if result.exact:
            assert result.scores == pytest.approx(true_top[:10], abs=TOL)
    wide = beam_rank_titles(biased, prompt_ids, trie, k=10, beam=128)  # the biased model is peaked
    assert wide.exact
    assert_top_k(wide, truth, titles, 10)


def test_beam_on_a_flat_model_is_approximate_and_says_so(model, tok, prompt_ids):
    """On the unbiased random model (near-uniform next tokens) a beam of 10 over ~2000 titles must
    drop prefixes that could hold better titles, and must not certify its result."""
    words = "Red Blue Night Day Lost City Dark Star River Moon".split()
    titles = [f"The {a} {b} ({y})" for a in words for b in words for y in range(1990, 2010)]
    result = beam_rank_titles(model, prompt_ids, TitleTrie(tok, titles), k=10, beam=10)
    assert not result.exact
    assert len(result.titles) == 10 and set(result.titles) <= set(titles)


def test_beam_rejects_bad_sizes(model, tok, prompt_ids):
    trie = TitleTrie(tok, ["Heat (1995)"])
    with pytest.raises(ValueError, match="beam"):
        beam_rank_titles(model, prompt_ids, trie, k=1, beam=0)
