"""The turn protocol: actions, who may take them, and the wire format of one turn.

One turn on the wire is::

    <action><recommend></action><response>You may enjoy <movie_title>Heat (1995)</movie_title>.</response>

``format_turn`` and ``parse_turn`` round-trip exactly. ``parse_turn`` raises only
:class:`ProtocolError` (never anything else), whose ``kind`` says what was wrong.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any


class Role(str, enum.Enum):
    """The two sides of a conversational-recommendation dialogue."""

    USER = "user"
    RECOMMENDER = "recommender"

    @property
    def other(self) -> "Role":
        return Role.RECOMMENDER if self is Role.USER else Role.USER


class Action(str, enum.Enum):
    """The six dialogue actions."""

    RECOMMEND = "recommend"
    INQUIRE = "inquire"
    GREETING = "greeting"
    DISCLOSE_GOAL = "disclose-goal"
    FEEDBACK = "feedback"
    ACCEPT = "accept"

    @property
    def token(self) -> str:
        """The structural token of this action, e.g. ``<recommend>``."""
        return f"<{self.value}>"


#: Which actions each role may take. Only the user accepts or discloses a goal; only the
#: recommender recommends. Both may greet, ask (a user asks about a suggested movie) and comment.
ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.USER: frozenset(
        {Action.GREETING, Action.DISCLOSE_GOAL, Action.INQUIRE, Action.FEEDBACK, Action.ACCEPT}
    ),
    Role.RECOMMENDER: frozenset(
        {Action.GREETING, Action.INQUIRE, Action.RECOMMEND, Action.FEEDBACK}
    ),
}

#: Actions whose response must name at least one item (``<movie_title>...</movie_title>``).
TITLE_REQUIRED: frozenset[Action] = frozenset({Action.RECOMMEND})
#: Actions that need an earlier recommendation in the dialogue.
NEEDS_RECOMMENDATION: frozenset[Action] = frozenset({Action.ACCEPT})


def legal_actions(role: Role, recommended_before: bool) -> frozenset[Action]:
    """The actions ``role`` may take now: its own actions, ``accept`` only once something has
    been recommended. The environment checks turns against this, and constrained decoding
    (:mod:`interplay.turn_grammar`) generates only these."""
    allowed = ROLE_ACTIONS[role]
    return allowed if recommended_before else allowed - NEEDS_RECOMMENDATION


ACTION_OPEN, ACTION_CLOSE = "<action>", "</action>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<response>", "</response>"
TITLE_OPEN, TITLE_CLOSE = "<movie_title>", "</movie_title>"

#: Every structural token, in the order they are added to a tokenizer.
STRUCTURAL_TOKENS: tuple[str, ...] = (
    ACTION_OPEN,
    ACTION_CLOSE,
    RESPONSE_OPEN,
    RESPONSE_CLOSE,
    *(a.token for a in Action),
    TITLE_OPEN,
    TITLE_CLOSE,
)

_FRAME_TAGS = (ACTION_OPEN, ACTION_CLOSE, RESPONSE_OPEN, RESPONSE_CLOSE)
_TITLE_RE = re.compile(re.escape(TITLE_OPEN) + r"(.*?)" + re.escape(TITLE_CLOSE), re.S)
_ACTION_TOKEN_RE = re.compile(r"<([a-z][a-z-]*)>")


class ProtocolErrorKind(str, enum.Enum):
    """What was wrong with a raw turn."""

    EMPTY = "empty"
    NO_ACTION = "no_action"
    UNKNOWN_ACTION = "unknown_action"
    MISSING_RESPONSE = "missing_response"
    UNCLOSED_RESPONSE = "unclosed_response"
    TEXT_BEFORE_ACTION = "text_before_action"
    TEXT_BETWEEN_BLOCKS = "text_between_blocks"
    TEXT_AFTER_RESPONSE = "text_after_response"
    NESTED_TAG = "nested_tag"
    UNBALANCED_TITLE = "unbalanced_title"
    EMPTY_TITLE = "empty_title"
    ROLE_ACTION = "role_action"


class ProtocolError(ValueError):
    """A raw turn does not follow the protocol. ``kind`` says how; ``raw`` is the input."""

    def __init__(self, kind: ProtocolErrorKind, message: str, raw: str | None = None):
        super().__init__(f"{kind.value}: {message}")
        self.kind = kind
        self.message = message
        self.raw = raw

    def __reduce__(self):  # keep kind/raw when crossing process (Ray) boundaries
        return (ProtocolError, (self.kind, self.message, self.raw))


@dataclass(frozen=True)
class Turn:
    """One parsed turn: an action and its response text.

    ``text`` keeps the ``<movie_title>`` markup so that it round-trips; ``titles`` and
    ``plain_text`` are derived from it. ``raw`` (the model output it was parsed from) and
    ``meta`` (agent-specific extras, e.g. a ranked item list) do not take part in equality.
    """

    action: Action
    text: str
    raw: str | None = field(default=None, compare=False)
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def titles(self) -> list[str]:
        """Item titles marked in the text, in order of appearance."""
        return marked_titles(self.text)

    @property
    def plain_text(self) -> str:
        """The text without title markup."""
        return self.text.replace(TITLE_OPEN, "").replace(TITLE_CLOSE, "")


def marked_titles(text: str) -> list[str]:
    """Item titles marked with ``<movie_title>`` in ``text``, in order of appearance."""
    return [t.strip() for t in _TITLE_RE.findall(text)]


def mark_title(title: str) -> str:
    """Wrap an item title in ``<movie_title>`` tags."""
    return f"{TITLE_OPEN}{title}{TITLE_CLOSE}"


def format_turn(turn: Turn) -> str:
    """The wire format of a turn."""
    return f"{ACTION_OPEN}{turn.action.token}{ACTION_CLOSE}{RESPONSE_OPEN}{turn.text}{RESPONSE_CLOSE}"


def _check_response_text(text: str, raw: str) -> None:
    for tag in _FRAME_TAGS:
        if tag in text:
            raise ProtocolError(ProtocolErrorKind.NESTED_TAG, f"{tag!r} inside the response", raw)
    depth = 0
    for m in re.finditer(re.escape(TITLE_OPEN) + "|" + re.escape(TITLE_CLOSE), text):
        if m.group(0) == TITLE_OPEN:
            depth += 1
            if depth > 1:
                raise ProtocolError(ProtocolErrorKind.NESTED_TAG, "<movie_title> inside <movie_title>", raw)
        else:
            depth -= 1
            if depth < 0:
                raise ProtocolError(ProtocolErrorKind.UNBALANCED_TITLE, "</movie_title> without opening tag", raw)
    if depth:
        raise ProtocolError(ProtocolErrorKind.UNBALANCED_TITLE, "<movie_title> never closed", raw)
    for title in _TITLE_RE.findall(text):
        if not title.strip():
            raise ProtocolError(ProtocolErrorKind.EMPTY_TITLE, "empty <movie_title></movie_title>", raw)


def parse_turn(raw: str, role: Role | None = None) -> Turn:
    """Parse one turn in wire format; raise :class:`ProtocolError` saying what was wrong.

    Whitespace around the whole turn and between the two blocks is tolerated; any other text
    outside the blocks is an error. With ``role`` given, the action must be one that role may take.
    """
    if not isinstance(raw, str):
        raise ProtocolError(ProtocolErrorKind.EMPTY, f"expected a string, got {type(raw).__name__}", None)
    s = raw.strip()
    if not s:
        raise ProtocolError(ProtocolErrorKind.EMPTY, "empty output", raw)
    start = s.find(ACTION_OPEN)
    if start < 0:
        raise ProtocolError(ProtocolErrorKind.NO_ACTION, "no <action> block", raw)
    if start > 0:
        raise ProtocolError(ProtocolErrorKind.TEXT_BEFORE_ACTION, f"text before <action>: {s[:start][:40]!r}", raw)
    end = s.find(ACTION_CLOSE, len(ACTION_OPEN))
    if end < 0:
        raise ProtocolError(ProtocolErrorKind.NO_ACTION, "<action> block never closed", raw)
    inner = s[len(ACTION_OPEN) : end].strip()
    m = _ACTION_TOKEN_RE.fullmatch(inner)
    if not m:
        raise ProtocolError(ProtocolErrorKind.UNKNOWN_ACTION, f"action block holds {inner[:40]!r}", raw)
    try:
        action = Action(m.group(1))
    except ValueError:
        raise ProtocolError(ProtocolErrorKind.UNKNOWN_ACTION, f"unknown action {m.group(1)!r}", raw) from None
    rest = s[end + len(ACTION_CLOSE) :]
    r_start = rest.find(RESPONSE_OPEN)
    if r_start < 0:
        raise ProtocolError(ProtocolErrorKind.MISSING_RESPONSE, "no <response> block", raw)
    if rest[:r_start].strip():
        raise ProtocolError(
            ProtocolErrorKind.TEXT_BETWEEN_BLOCKS, f"text between blocks: {rest[:r_start][:40]!r}", raw
        )
    body = rest[r_start + len(RESPONSE_OPEN) :]
    r_end = body.rfind(RESPONSE_CLOSE)
    if r_end < 0:
        raise ProtocolError(ProtocolErrorKind.UNCLOSED_RESPONSE, "<response> never closed", raw)
    text, tail = body[:r_end], body[r_end + len(RESPONSE_CLOSE) :]
    if tail:
        raise ProtocolError(ProtocolErrorKind.TEXT_AFTER_RESPONSE, f"text after </response>: {tail[:40]!r}", raw)
    _check_response_text(text, raw)
    if role is not None and action not in ROLE_ACTIONS[role]:
        raise ProtocolError(ProtocolErrorKind.ROLE_ACTION, f"the {role.value} may not {action.value}", raw)
    return Turn(action=action, text=text, raw=raw)


def check_turn(turn: Turn, role: Role) -> Turn:
    """Validate a turn an agent built directly (not from text) by its wire form."""
    return parse_turn(format_turn(turn), role=role)
