"""The tokens the project adds to a model's tokenizer, and how a model's embeddings grow for them.

The protocol's structural tokens (``<action>``, ``<recommend>``, ``<movie_title>``, ...) and the
serialisation's turn tokens (``<|context|>``, ``<|user|>``, ``<|recommender|>``, ``<|end|>``) are
added as special tokens, so no BPE merge crosses a segment boundary. Training, adapters and
backends all resize a model the same way here.
"""

from __future__ import annotations

from interplay.protocol import STRUCTURAL_TOKENS, Role

CONTEXT, END = "<|context|>", "<|end|>"
SPEAKER = {Role.USER: "<|user|>", Role.RECOMMENDER: "<|recommender|>"}
SPECIAL_TOKENS: tuple[str, ...] = (CONTEXT, END, SPEAKER[Role.USER], SPEAKER[Role.RECOMMENDER])
ADDED_TOKENS: tuple[str, ...] = (*STRUCTURAL_TOKENS, *SPECIAL_TOKENS)


def add_special_tokens(tokenizer, model=None) -> int:
    """Add the structural and turn tokens (once); resize the model's embeddings to match.

    A new token's input (and, when untied, output) embedding starts as the mean of the embeddings
    of the pieces its spelling tokenizes into (``<action>`` -> ``<``, ``action``, ``>``), not as
    the mean of the whole vocabulary: with the vocabulary mean every new token has the same
    logit, low and indistinguishable, and one epoch of a small data set does not move it (measured:
    the first token ``<action>`` stayed at median rank ~8000 after one epoch).
    """
    new = [t for t in ADDED_TOKENS if t not in tokenizer.get_vocab()]
    spelling = {t: tokenizer(t, add_special_tokens=False)["input_ids"] for t in new}
    added = tokenizer.add_special_tokens({"additional_special_tokens": list(ADDED_TOKENS)},
                                         replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model is not None:
        old_rows = model.get_input_embeddings().weight.shape[0]
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64, mean_resizing=False)
        init_new_rows(model, old_rows)  # deterministic: an adapter's base is resized again at every load
        init_from_spelling(model, {tokenizer.convert_tokens_to_ids(t): ids for t, ids in spelling.items()})
    return added


def _embedding_layers(model) -> list:
    layers = [model.get_input_embeddings()]
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != layers[0].weight.data_ptr():
        layers.append(out)
    return layers


def init_new_rows(model, old_rows: int) -> None:
    """Set the embedding rows from ``old_rows`` on (added tokens, padding to a multiple of 64) to the
    mean of the old rows: the same values at every resize, where transformers' default draws them
    at random."""
    import torch

    with torch.no_grad():
        for layer in _embedding_layers(model):
            if layer.weight.shape[0] > old_rows:
                layer.weight[old_rows:] = layer.weight[:old_rows].mean(dim=0)


def init_from_spelling(model, spelling: dict[int, list[int]]) -> None:
    """Set each new token's embedding row(s) to the mean of the rows of its spelling's pieces."""
    import torch

    with torch.no_grad():
        for layer in _embedding_layers(model):
            for new_id, pieces in spelling.items():
                if pieces:
                    layer.weight[new_id] = layer.weight[pieces].mean(dim=0)
