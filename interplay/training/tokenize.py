"""Records -> token ids with the role each token is trained for; long dialogues are windowed."""

from __future__ import annotations

from interplay.data.schema import DialogueRecord
from interplay.episode import RecommenderView, build_recommender_view, build_user_view
from interplay.protocol import Role
from interplay.candidates import CandidateRetriever, with_candidates
from interplay.catalogue import Catalogue
from interplay.grounding import ground_history
from interplay.added_tokens import ADDED_TOKENS, add_special_tokens, init_from_spelling, init_new_rows  # noqa: F401 (re-exported)
from interplay.training.serialize import CONTEXT, END, PROMPT_LAYOUT, Segment, header, match_wishes, turn_segments

#: token_roles values
NONE, USER, RECOMMENDER = 0, 1, 2
ROLE_ID = {Role.USER: USER, Role.RECOMMENDER: RECOMMENDER}


def record_view(record: DialogueRecord, role: Role, recommender_sees_persona: bool = False):
    """The view the role's agent would get for this record's episode (None: unusable for the role)."""
    if role is Role.USER:
        return None if record.target is None else build_user_view(record.id, record.episode_spec())
    if record.target is None:
        return RecommenderView(episode_id=record.id, persona=record.persona if recommender_sees_persona else None)
    return build_recommender_view(record.id, record.episode_spec(), with_persona=recommender_sees_persona)


def _encode(tokenizer, segs: list[Segment]) -> tuple[list[int], list[int]]:
    ids, roles = [], []
    for s in segs:
        piece = tokenizer(s.text, add_special_tokens=False)["input_ids"]
        ids += piece
        roles += [ROLE_ID[s.trained_for] if s.trained_for else NONE] * len(piece)
    return ids, roles


def tokenize_record(record: DialogueRecord, tokenizer, role: Role, max_length: int = 1024,
                    recommender_sees_persona: bool = False, grounding: Catalogue | None = None,
                    candidates: tuple[CandidateRetriever, int] | None = None,
                    grounding_match: bool = False, layout: int = PROMPT_LAYOUT) -> list[dict]:
    """Training examples of one record for ``role``: ``input_ids`` and ``token_roles``.

    ``grounding``: the catalogue whose facts a grounded user sees after each recommendation
    (:mod:`interplay.grounding`); the user's serialisation then carries them, as at inference.
    ``candidates``: (retriever, k) for a recommender run with candidates: each recorded
    recommender turn is preceded by the candidates retrieved from the turns before it.
    ``grounding_match``: each grounded item's facts also say how many target attributes it shows.
    ``layout``: the header's prompt layout (:data:`interplay.training.serialize.PROMPT_LAYOUTS`).

    The header is the role's own view. A dialogue longer than ``max_length`` becomes several
    windows, each the header plus consecutive whole turns, the next window starting one turn
    before the previous one ended (so every turn is trained with at least its previous turn as
    context); no turn is dropped, and a single turn too long for any window is cut at its end.
    Windows without a token of ``role`` are left out.
    """
    view = record_view(record, role, recommender_sees_persona)
    if view is None:
        return []
    history = [t.to_history() for t in record.turns]
    if grounding is not None and role is Role.USER:
        history = ground_history(history, grounding, record.target)
    if candidates is not None and role is Role.RECOMMENDER:
        history = with_candidates(history, *candidates)
    head = Segment(f"{CONTEXT}{header(role, view, layout)}{END}")
    wanted = match_wishes(role, view, grounding_match and grounding is not None)
    turns = [turn_segments(role, t, wanted) for t in history]
    head_ids, head_roles = _encode(tokenizer, [head])
    encoded = [_encode(tokenizer, t) for t in turns]
    budget = max_length - len(head_ids)
    if budget <= 0:
        raise ValueError(f"record {record.id}: the header alone is {len(head_ids)} tokens > max_length {max_length}")
    examples, start = [], 0
    while start < len(encoded):
        ids, roles, end = list(head_ids), list(head_roles), start
        while end < len(encoded) and len(ids) + len(encoded[end][0]) <= max_length:
            ids += encoded[end][0]
            roles += encoded[end][1]
            end += 1
        if end == start:  # one turn longer than the budget: keep its start
            ids += encoded[start][0][:budget]
            roles += encoded[start][1][:budget]
            end = start + 1
        if ROLE_ID[role] in roles:
            examples.append({"input_ids": ids, "token_roles": roles, "record_id": record.id,
                             "window": len(examples)})
        if end >= len(encoded):
            break
        start = max(end - 1, start + 1)
    return examples
