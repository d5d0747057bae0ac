"""Constrained decoding cost vs catalogue size: grammar compile time and per-token mask time.

    python benchmarks/grammar_scaling.py [--sizes 1000,14600,100000] [--data ../shared/data]

Titles come from the MovieLens catalogue the project builds (``load_movielens_catalogue``: MovieLens
small + the keyword-annotated catalogue, ~14.6k titles). Sizes below it take the first N titles;
sizes above it add real titles with a " (Part N)"-style variant suffix until N distinct titles exist
(the same shape and lengths as real ones; no such catalogue is on this machine). For each size it
compiles the turn grammar with the default model's tokenizer through the project's own
:class:`~interplay.backends.constrained.TurnConstrainer`, walks legal recommend turns token by
token (each naming a random title of the catalogue) computing the allowed-token mask before each
token exactly as the decode loop does, and reports compile seconds and mask milliseconds (median,
p99, max) over all steps, split into steps inside a title and steps elsewhere. The model's own
decode step is ~10-30 ms per batch on this machine, so a mask costs that fraction of it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path


def catalogue_titles(data_root: str, n: int) -> list[str]:
    """``n`` distinct titles: real ones first, then real ones with a variant suffix."""
    from interplay.data.movielens import load_movielens_catalogue

    real = list(dict.fromkeys(it.title for it in load_movielens_catalogue(data_root)))
    titles = real[:n]
    k = 2
    while len(titles) < n:
        for t in real:
            titles.append(f"{t} (Part {k})")
            if len(titles) == n:
                break
        k += 1
    return titles


def measure(tokenizer, titles: list[str], walks: int, seed: int) -> dict:
    from interplay.backends.base import TurnConstraint
    from interplay.backends.constrained import TurnConstrainer
    from interplay.catalogue import Catalogue, Item
    from interplay.protocol import Action, Role

    con = TurnConstrainer(tokenizer)
    key = Catalogue([Item(item_id=str(i), title=t) for i, t in enumerate(titles)]).key
    t0 = time.perf_counter()
    con.register_catalogue(key, titles)
    register_s = time.perf_counter() - t0
    c = TurnConstraint(actions=(Action.RECOMMEND, Action.INQUIRE, Action.FEEDBACK), role=Role.RECOMMENDER,
                       catalogue=key, prefill="<action>")
    t0 = time.perf_counter()
    con.validate(c)  # compiles the grammar
    compile_s = time.perf_counter() - t0
    rng = random.Random(seed)
    in_title, elsewhere = [], []
    for _ in range(walks):
        title = rng.choice(con.catalogues[key])
        turn = f"<recommend></action><response>You may enjoy <movie_title>{title}</movie_title>, a fine film.</response>"
        ids = tokenizer(turn, add_special_tokens=False)["input_ids"]
        m = con.matcher(c)
        text = ""
        for tok in ids:
            t1 = time.perf_counter()
            allowed = con.mask([m], [False])[0]
            dt = (time.perf_counter() - t1) * 1000
            inside = text.count("<movie_title>") > text.count("</movie_title>")
            (in_title if inside else elsewhere).append(dt)
            assert allowed[tok], f"the grammar refused a legal turn at {text!r}"
            assert m.consume_token(tok)
            text += tokenizer.decode([tok])
        assert m.is_stopped()
    every = in_title + elsewhere

    def q(xs: list[float], p: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]

    return {"titles": len(titles), "spellable": len(con.catalogues[key]), "register_s": round(register_s, 3),
            "compile_s": round(compile_s, 3), "steps": len(every),
            "mask_ms_median": round(statistics.median(every), 4), "mask_ms_p99": round(q(every, 0.99), 4),
            "mask_ms_max": round(max(every), 3),
            "in_title_ms_median": round(statistics.median(in_title), 4) if in_title else None,
            "elsewhere_ms_median": round(statistics.median(elsewhere), 4) if elsewhere else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,14600,100000")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--walks", type=int, default=20, help="legal turns walked per size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from interplay.backends.default_model import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    rows = []
    print(f"{'titles':>8}{'register s':>11}{'compile s':>10}{'steps':>7}{'mask ms med':>12}{'p99':>8}{'max':>8}"
          f"{'in title':>10}{'elsewhere':>10}")
    for n in (int(x) for x in args.sizes.split(",")):
        r = measure(tokenizer, catalogue_titles(args.data, n), args.walks, args.seed)
        rows.append(r)
        print(f"{r['titles']:>8}{r['register_s']:>11.2f}{r['compile_s']:>10.2f}{r['steps']:>7}"
              f"{r['mask_ms_median']:>12.4f}{r['mask_ms_p99']:>8.3f}{r['mask_ms_max']:>8.2f}"
              f"{r['in_title_ms_median']:>10.4f}{r['elsewhere_ms_median']:>10.4f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
