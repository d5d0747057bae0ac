"""One serialisation of a dialogue per role, shared by training and inference.

    <|context|>ROLE HEADER (what the role may know)<|end|>
    <|user|><action><disclose-goal></action><response>...</response><|end|>
    <|recommender|><action><recommend></action><response>...</response><|end|>
    <|context|>About Heat (1995): action, crime, heist.<|end|>     (grounded user only; with
                                                                   --grounding-match: "... Matches 2 of your 6 wishes.")
    ...

The speaker tokens and ``<|end|>`` are added to the tokenizer as special tokens together with the
protocol's structural tokens, so no BPE merge crosses a segment boundary: tokenizing segment by
segment gives the same ids as tokenizing the whole string, and the ids of a training example and
of the agent's prompt for the same history are identical up to the point of generation. A role
is trained on its own turns' ``<action>...</response><|end|>`` tokens; the speaker token before a
turn is the cue, never a target.
"""

from __future__ import annotations

from dataclasses import dataclass

from interplay.episode import HistoryTurn, Persona, RecommenderView, UserView
from interplay.candidates import candidates_text
from interplay.grounding import facts_text
from interplay.added_tokens import ADDED_TOKENS, CONTEXT, END, SPEAKER, SPECIAL_TOKENS  # noqa: F401 (re-exported)
from interplay.protocol import ROLE_ACTIONS, Action, Role, Turn, format_turn



@dataclass(frozen=True)
class Segment:
    """A piece of the serialisation; ``trained_for`` is the role whose loss covers it, if any."""

    text: str
    trained_for: Role | None = None


def _persona(persona: Persona) -> str:
    lines = [f"Preferences: {persona.summary}"]
    lines += [f"Watched: {w.title}. {w.text}".rstrip() for w in persona.watched]
    return "\n".join(lines)


#: prompt layouts of fine-tuned checkpoints: 1 (before issue 35) "Role: R" then the persona; 2 the
#: role's brief (what every episode of the role has in common: its task and its actions) first,
#: then the persona and the target, so episodes share one prefix. A checkpoint records its layout
#: (``prompt_layout`` in interplay_training.json; none recorded: 1) and is prompted in it.
PROMPT_LAYOUTS = (1, 2)
PROMPT_LAYOUT = 2

_TASK = {Role.USER: "You are looking for a movie, talking with a recommender. Accept a recommended movie only "
                    "if it fits what you want.",
         Role.RECOMMENDER: "You are a movie recommender. Find out what the user wants, then recommend a movie."}


def role_brief(role: Role) -> str:
    """The part of a role's header that every episode shares (layout 2): role, task, actions."""
    actions = ", ".join(sorted(a.value for a in ROLE_ACTIONS[role]))
    return f"Role: {role.value}\n{_TASK[role]}\nActions: {actions}"


def header(role: Role, view: UserView | RecommenderView, layout: int = PROMPT_LAYOUT) -> str:
    """What the role may know: the user its persona and target attributes; the recommender
    nothing about the target (and the persona only when its view has one). ``layout``: see
    :data:`PROMPT_LAYOUTS`."""
    if layout not in PROMPT_LAYOUTS:
        raise ValueError(f"unknown prompt layout {layout}; known: {PROMPT_LAYOUTS}")
    head = f"Role: {role.value}" if layout == 1 else role_brief(role)
    if role is Role.USER:
        assert isinstance(view, UserView)
        return (f"{head}\n{_persona(view.persona)}\n"
                f"Wants: {view.target_attribute_text or ', '.join(view.target_attributes)}")
    assert isinstance(view, RecommenderView)
    return head + (f"\n{_persona(view.persona)}" if view.persona is not None else "")


def turn_segments(role: Role, turn: HistoryTurn, wanted: list[str] | None = None) -> list[Segment]:
    """One turn as ``role`` reads it: for a recommender run with candidates, the candidates it
    was shown before its turn; speaker cue, body (trained when ``role`` spoke it); for a grounded
    user, the facts of the items the turn names (with ``wanted``, each item's match count against
    those target attributes). Context segments are never trained."""
    out = [Segment(f"{CONTEXT}{candidates_text(turn.candidates)}{END}")] \
        if role is Role.RECOMMENDER and turn.role is Role.RECOMMENDER and turn.candidates else []
    out += [Segment(SPEAKER[turn.role]),
           Segment(format_turn(Turn(turn.action, turn.text)) + END, trained_for=turn.role if turn.role is role else None)]
    if role is Role.USER and turn.about:
        out.append(Segment(f"{CONTEXT}{facts_text(turn.about, wanted)}{END}"))
    return out


def match_wishes(role: Role, view: UserView | RecommenderView, match: bool) -> list[str] | None:
    """The attributes grounded facts are matched against: the user's target attributes when
    ``match`` (a ``--grounding-match`` checkpoint), else None."""
    return list(view.target_attributes) if match and role is Role.USER and isinstance(view, UserView) else None


def segments(role: Role, view: UserView | RecommenderView, history: list[HistoryTurn],
             match: bool = False, layout: int = PROMPT_LAYOUT) -> list[Segment]:
    """Header and every turn, each turn's body marked as trained for its speaker ``role`` only."""
    wanted = match_wishes(role, view, match)
    return [Segment(f"{CONTEXT}{header(role, view, layout)}{END}")] + \
        [s for t in history for s in turn_segments(role, t, wanted)]


def inference_prompt(role: Role, view: UserView | RecommenderView, history: list[HistoryTurn],
                     candidates: list[str] | None = None, match: bool = False, layout: int = PROMPT_LAYOUT) -> str:
    """The prompt for ``role``'s next turn: the same serialisation, ending with its speaker cue
    (after the turn's ``candidates``, for a recommender run with them)."""
    upcoming = HistoryTurn(role=role, action=Action.INQUIRE, text="", candidates=candidates or [])
    cue = "".join(s.text for s in turn_segments(role, upcoming)[:-1])  # the turn's context and speaker cue
    return "".join(s.text for s in segments(role, view, history, match, layout)) + cue
