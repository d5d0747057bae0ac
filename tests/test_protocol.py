import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interplay.protocol import (
    ROLE_ACTIONS,
    STRUCTURAL_TOKENS,
    Action,
    ProtocolError,
    ProtocolErrorKind,
    Role,
    Turn,
    check_turn,
    format_turn,
    mark_title,
    parse_turn,
)

TAGS = ["<action>", "</action>", "<response>", "</response>", "<movie_title>", "</movie_title>"]

# response text: arbitrary text without structural tags, with properly marked titles mixed in
plain = st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=40)
title = st.text(alphabet=st.characters(blacklist_characters="<>"), min_size=1, max_size=30).filter(str.strip)
texts = st.lists(st.one_of(plain, title.map(mark_title)), max_size=5).map("".join)


@given(action=st.sampled_from(list(Action)), text=texts)
def test_format_parse_round_trip(action, text):
    turn = Turn(action, text)
    wire = format_turn(turn)
    parsed = parse_turn(wire)
    assert parsed == turn
    assert format_turn(parsed) == wire
    assert parsed.raw == wire


@settings(max_examples=300)
@given(st.one_of(st.text(), st.lists(st.one_of(st.sampled_from(TAGS + [a.token for a in Action]), st.text(max_size=8)),
                                     max_size=12).map("".join)))
def test_arbitrary_text_raises_only_protocol_error(raw):
    try:
        turn = parse_turn(raw)
    except ProtocolError as exc:
        assert isinstance(exc.kind, ProtocolErrorKind)
    else:  # whatever parses must round-trip to an equivalent turn
        assert parse_turn(format_turn(turn)) == turn


def test_titles_and_plain_text():
    t = parse_turn("<action><recommend></action><response>Try <movie_title>Heat (1995)</movie_title> or "
                   "<movie_title> Ronin (1998) </movie_title>.</response>")
    assert t.action is Action.RECOMMEND
    assert t.titles == ["Heat (1995)", "Ronin (1998)"]
    assert t.plain_text == "Try Heat (1995) or  Ronin (1998) ."


@pytest.mark.parametrize(
    "raw, kind",
    [
        ("", ProtocolErrorKind.EMPTY),
        ("   \n", ProtocolErrorKind.EMPTY),
        ("hello there", ProtocolErrorKind.NO_ACTION),
        ("<action><recommend><response>x</response>", ProtocolErrorKind.NO_ACTION),
        ("Sure! <action><inquire></action><response>x</response>", ProtocolErrorKind.TEXT_BEFORE_ACTION),
        ("<action><dance></action><response>x</response>", ProtocolErrorKind.UNKNOWN_ACTION),
        ("<action>recommend</action><response>x</response>", ProtocolErrorKind.UNKNOWN_ACTION),
        ("<action><inquire></action>", ProtocolErrorKind.MISSING_RESPONSE),
        ("<action><inquire></action> so <response>x</response>", ProtocolErrorKind.TEXT_BETWEEN_BLOCKS),
        ("<action><inquire></action><response>x", ProtocolErrorKind.UNCLOSED_RESPONSE),
        ("<action><inquire></action><response>x</response> and more", ProtocolErrorKind.TEXT_AFTER_RESPONSE),
        ("<action><inquire></action><response>a <response>b</response>", ProtocolErrorKind.NESTED_TAG),
        ("<action><inquire></action><response>a <action>b</response>", ProtocolErrorKind.NESTED_TAG),
        ("<action><recommend></action><response><movie_title>A <movie_title>B</movie_title></movie_title>"
         "</response>", ProtocolErrorKind.NESTED_TAG),
        ("<action><recommend></action><response><movie_title>A</response>", ProtocolErrorKind.UNBALANCED_TITLE),
        ("<action><recommend></action><response>A</movie_title></response>", ProtocolErrorKind.UNBALANCED_TITLE),
        ("<action><recommend></action><response><movie_title> </movie_title></response>",
         ProtocolErrorKind.EMPTY_TITLE),
    ],
)
def test_typed_errors(raw, kind):
    with pytest.raises(ProtocolError) as info:
        parse_turn(raw)
    assert info.value.kind is kind
    assert info.value.raw == (raw if raw is not None else None)


def test_whitespace_around_turn_and_between_blocks_is_tolerated():
    t = parse_turn("\n <action> <greeting> </action>\n<response>Hello!</response>\n")
    assert t == Turn(Action.GREETING, "Hello!")


def test_role_permissions():
    assert Action.ACCEPT in ROLE_ACTIONS[Role.USER] and Action.ACCEPT not in ROLE_ACTIONS[Role.RECOMMENDER]
    assert Action.RECOMMEND in ROLE_ACTIONS[Role.RECOMMENDER] and Action.RECOMMEND not in ROLE_ACTIONS[Role.USER]
    assert Action.DISCLOSE_GOAL not in ROLE_ACTIONS[Role.RECOMMENDER]
    with pytest.raises(ProtocolError) as info:
        parse_turn(format_turn(Turn(Action.ACCEPT, "ok")), role=Role.RECOMMENDER)
    assert info.value.kind is ProtocolErrorKind.ROLE_ACTION
    assert check_turn(Turn(Action.ACCEPT, "ok"), Role.USER) == Turn(Action.ACCEPT, "ok")


def test_structural_tokens_cover_every_action():
    assert len(STRUCTURAL_TOKENS) == 12 and len(set(STRUCTURAL_TOKENS)) == 12
    assert {f"<{a.value}>" for a in Action} <= set(STRUCTURAL_TOKENS)


def test_protocol_error_survives_pickling():
    exc = ProtocolError(ProtocolErrorKind.NO_ACTION, "no <action> block", "raw text")
    back = pickle.loads(pickle.dumps(exc))
    assert (back.kind, back.message, back.raw, str(back)) == (exc.kind, exc.message, exc.raw, str(exc))
