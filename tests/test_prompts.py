"""Prompts, scripted answers and the tolerant action parser."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmq.envs.base import TaskInfo
from vlmq.models.prompts import build_prompt, format_response, parse_agent

TASK = TaskInfo(
    env_id="gym_cards/Blackjack",
    goal="Win the hand of blackjack against the dealer.",
    action_doc='Reply "hit" to take a card or "stand" to stop.',
    action_example="stand",
)


def test_build_prompt_contains_everything() -> None:
    p = build_prompt(TASK, "Your total is 15. Dealer shows 10.")
    assert TASK.goal in p and TASK.action_doc in p and "Dealer shows 10" in p
    assert format_response("stand") in p and '{"action": "<one action>"}' in p and "thoughts" not in p
    c = build_prompt(TASK, "Your total is 15.", cot=True)
    assert '"thoughts"' in c and '"action"' in c


def test_format_response() -> None:
    assert format_response("hit") == '{"action": "hit"}'
    assert json.loads(format_response("+", thoughts="go up")) == {"thoughts": "go up", "action": "+"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"action": "hit"}', "hit"),
        ('{"thoughts": "I have 20, so I stop.", "action": "stand"}', "stand"),
        ("{'action': 'hit'}", "hit"),
        ('```json\n{"action": "left"}\n```', "left"),
        ('Sure! {"action": "forward"} hope this helps }}}', "forward"),
        ('{"action": "type(ref=5, text=\\"hi\\")"}', 'type(ref=5, text="hi")'),
        ('{"action": "click(ref=3)"', "click(ref=3)"),  # unterminated JSON
        ('{"Action": 12}', "12"),
        ('{"response": {"action": "toggle"}}', "toggle"),
        ("I think the right move is click(ref=12) here.", "click(ref=12)"),
        ('Let me type(ref=5, text="hello, world") now', 'type(ref=5, text="hello, world")'),
        ("click(x=40, y=100)", "click(x=40, y=100)"),
        ("Thoughts: the ball is ahead.\nAction: forward", "forward"),
        ("hit", "hit"),
        ("  stand.  ", "stand."),
        ('"+"', "+"),
        ("3*4=12", "3*4=12"),
        ("", None),
        ("   \n  ", None),
        ("{}", None),
        ('{"action": ""}', None),
        ('{"action": null}', None),
        ("lorem ipsum dolor sit amet\nconsectetur adipiscing elit\nsed do eiusmod", None),
        ("x" * 500, None),
    ],
)
def test_parse_agent_examples(text: str, expected: str | None) -> None:
    assert parse_agent(text) == expected


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_parse_agent_never_raises(text: str) -> None:
    out = parse_agent(text)
    assert out is None or (isinstance(out, str) and out.strip() == out and out)


@given(st.text(alphabet=st.characters(blacklist_characters="\"'\n\r"), min_size=1, max_size=60))
@settings(max_examples=300, deadline=None)
def test_round_trip(action: str) -> None:
    action = action.strip()
    if not action:
        return
    assert parse_agent(format_response(action)) == action
    assert parse_agent(format_response(action, thoughts="because {reasons}")) == action


@given(
    st.text(alphabet=st.characters(blacklist_characters="\"'\n\r"), min_size=1, max_size=40),
    st.text(max_size=40),
)
@settings(max_examples=200, deadline=None)
def test_round_trip_with_junk_after(action: str, junk: str) -> None:
    action = action.strip()
    if not action:
        return
    assert parse_agent(format_response(action) + "\n" + junk.replace("{", "")) == action


def test_parse_agent_non_string() -> None:
    assert parse_agent(None) is None  # type: ignore[arg-type]
    assert parse_agent(b"hit") is None  # type: ignore[arg-type]
