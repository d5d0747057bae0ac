"""How a role's view and the dialogue so far become a model prompt.

One function, :func:`build_messages`, turns (role, view, history) into chat messages; the LLM
agents render them with the model's chat template, or with the project's own turn delimiters when
the model has none (base models). Each turn of the dialogue appears in the protocol's wire format.
"""

from __future__ import annotations

from interplay.episode import HistoryTurn, Persona, RecommenderView, UserView
from interplay.candidates import candidates_text
from interplay.grounding import facts_text
from interplay.protocol import ACTION_OPEN, ROLE_ACTIONS, Action, Role, Turn, format_turn, mark_title

#: Delimiters used when a tokenizer has no chat template.
TURN_START, TURN_END = "<|turn|>", "<|end|>"

_EXAMPLES = {
    Role.USER: Turn(Action.DISCLOSE_GOAL, "Hi! I'd like a funny movie about friends on a road trip."),
    Role.RECOMMENDER: Turn(
        Action.RECOMMEND, f"You may enjoy {mark_title('Good Will Hunting (1997)')}, a warm drama about a genius."
    ),
}


def _persona_text(persona: Persona) -> str:
    lines = [f"General preferences: {persona.summary}"]
    for w in persona.watched:
        lines.append(f"- Watched {w.title}: {w.text}" if w.text else f"- Watched {w.title}")
    return "\n".join(lines)


def system_text(role: Role, view: UserView | RecommenderView, layout: int = 2) -> str:
    """The header of a role's prompt: who it is and how to answer (the same in every episode of
    the role, so episodes share this prefix), then what this episode's agent knows. ``layout=1``:
    the order before issue 35 (what it knows in the middle of the instructions), kept to measure
    the shared prefix against and to reproduce figures measured with it."""
    actions = ", ".join(sorted(a.value for a in ROLE_ACTIONS[role]))
    if role is Role.USER:
        assert isinstance(view, UserView)
        who = ("You are a user looking for a movie to watch, talking with a recommender. "
               "Reveal your wishes gradually. Accept a recommended movie only if it fits what you want.")
        knows = (f"{_persona_text(view.persona)}\n"
                 f"The movie you want: {view.target_attribute_text or ', '.join(view.target_attributes)}")
    else:
        assert isinstance(view, RecommenderView)
        who = "You are a movie recommender. Find out what the user wants, then recommend a movie."
        knows = "About the user:\n" + _persona_text(view.persona) if view.persona is not None else ""
    answer = (f"Answer with one turn in this format, choosing the action from: {actions}.\n"
              f"Example: {format_turn(_EXAMPLES[role])}")
    if layout == 1:
        if role is Role.USER:
            lead, _, tail = who.partition(". ")
            return f"{lead}.\n{knows}\n{tail}\n{answer}"
        return f"{who}\n{knows}\n{answer}" if knows else f"{who}\n{answer}"
    return f"{who}\n{answer}\n{knows}" if knows else f"{who}\n{answer}"


def build_messages(role: Role, view: UserView | RecommenderView, history: list[HistoryTurn],
                   candidates: list[str] | None = None) -> list[dict]:
    """Chat messages for ``role``'s next turn: its own turns are ``assistant``, the other's ``user``
    (for a grounded user, followed by the facts of the films they name); a recommender's
    ``candidates`` for this turn close the last message."""
    messages = [{"role": "system", "content": system_text(role, view)}]
    for turn in history:
        speaker = "assistant" if turn.role is role else "user"
        content = format_turn(Turn(turn.action, turn.text))
        if role is Role.USER and turn.about:  # a grounded user: what the named films are
            content += "\n" + facts_text(turn.about)
        messages.append({"role": speaker, "content": content})
    if len(messages) == 1 or messages[-1]["role"] == "assistant":
        # chat templates expect a user message before the reply; an opening turn gets a cue
        messages.append({"role": "user", "content": "(The conversation starts. Your turn.)"})
    if candidates and role is Role.RECOMMENDER:
        messages[-1] = {**messages[-1], "content": messages[-1]["content"] + "\n(" + candidates_text(candidates) + ")"}
    return messages


def load_prompt_tokenizer(path: str):
    """A tokenizer to render prompts with (chat template and special tokens), loaded as a fast
    tokenizer so the process does not import torch (``AutoTokenizer`` does: ~370 MB of an agent
    host's memory); models without a ``tokenizer.json`` fall back to ``AutoTokenizer``."""
    from transformers import PreTrainedTokenizerFast

    try:
        return PreTrainedTokenizerFast.from_pretrained(path)
    except (OSError, ValueError):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)


def render_prompt(tokenizer, messages: list[dict], prefill: str = ACTION_OPEN) -> str:
    """Render messages with the tokenizer's chat template (or plain delimiters), ready to generate."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "".join(f"{TURN_START}{m['role']}\n{m['content']}{TURN_END}\n" for m in messages)
        text += f"{TURN_START}assistant\n"
    return text + prefill
