"""Model-agnostic prompts and the agent-side parser.

- :func:`build_prompt` writes the user message of one turn (goal, action documentation, example,
  observation text, answer format). The chat template of each model wraps it (``Policy.encode``).
- :func:`format_response` is how scripted policies "write" their answer: ``{"action": "hit"}``.
- :func:`parse_agent` pulls the action text back out of any model response, tolerantly (JSON with
  single quotes, trailing junk or code fences; a code-like call such as ``click(ref=3)``; a short
  plain-text answer). It returns ``None`` when no action can be found and never raises.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from vlmq.envs.base import TaskInfo

MAX_PLAIN_ACTION_CHARS = 80
MAX_NEW_TOKENS = 24
"""Default response length limit (tokens) of a policy: training, collection and evaluation."""
_MAX_PARSE_CHARS = 20_000


def format_response(action: str, thoughts: str | None = None) -> str:
    """The answer a policy writes for ``action``: ``{"action": "..."}`` or ``{"thoughts": ..., "action": ...}``."""
    obj: dict[str, str] = {} if thoughts is None else {"thoughts": thoughts}
    obj["action"] = action
    return json.dumps(obj, ensure_ascii=False)


def build_prompt(task: TaskInfo, obs_text: str, cot: bool = False) -> str:
    """The user message for one turn of ``task`` given the observation text.

    With ``cot`` the model is asked to reason first: ``{"thoughts": "...", "action": "..."}``.
    """
    example = task.action_example.strip()
    if example and not example.startswith("{"):
        example = format_response(example, "..." if cot else None)
    if cot:
        fmt = '{"thoughts": "<your step-by-step reasoning>", "action": "<one action>"}'
    else:
        fmt = '{"action": "<one action>"}'
    parts = [f"Goal: {task.goal.strip()}", f"Actions: {task.action_doc.strip()}"]
    if example:
        parts.append(f"Example of a valid answer: {example}")
    parts.append(f"Observation:\n{obs_text.strip()}")
    parts.append(f"Answer with a JSON object and nothing else: {fmt}")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- parsing
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)(?:```|$)", re.S)
# "action": "x" | 'action': 'x' (tolerates broken JSON around it)
_KV_QUOTED = re.compile(
    r"""["']?\baction["']?\s*[:=]\s*(?:"((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)')""", re.I
)
# Action: x   (rest of the line)
_KV_PLAIN = re.compile(r"""(?:^|\n)\s*[*#>-]*\s*["']?action["']?\s*[:=]\s*([^\n]+)""", re.I)
# code-like call with keyword arguments (or none): click(ref=3), type(ref=5, text="hi"), click(x=1, y=2)
_CALL = re.compile(
    r"""\b[A-Za-z_]\w*\(\s*(?:\w+\s*=\s*(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^,()"'\n]+?)\s*"""
    r"""(?:,\s*\w+\s*=\s*(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^,()"'\n]+?)\s*)*)?\)"""
)


def _objects(text: str) -> list[str]:
    """Brace-balanced ``{...}`` substrings (string-aware for both quote kinds), outermost first."""
    out: list[str] = []
    i = text.find("{")
    while i != -1 and len(out) < 32:
        depth, quote, esc, end = 0, "", False, -1
        for j in range(i, len(text)):
            ch = text[j]
            if quote:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    end = j
                    break
        if end == -1:
            i = text.find("{", i + 1)
            continue
        out.append(text[i : end + 1])
        i = text.find("{", end + 1)
    return out


def _load(obj_text: str) -> Any:
    try:
        return json.loads(obj_text)
    except Exception:
        pass
    try:
        return ast.literal_eval(obj_text)
    except Exception:
        return None


def _find_action(obj: Any, depth: int = 0) -> str | None:
    if depth > 4 or not isinstance(obj, dict):
        return None
    for k, v in obj.items():
        if isinstance(k, str) and k.strip().lower() == "action":
            if isinstance(v, str):
                return v
            if isinstance(v, bool) or v is None:
                return None
            if isinstance(v, int | float):
                return str(v)
    for v in obj.values():
        found = _find_action(v, depth + 1)
        if found is not None:
            return found
    return None


def _unescape(s: str, quote: str) -> str:
    try:
        return json.loads('"' + s + '"') if quote == '"' else s.replace("\\'", "'")
    except Exception:
        return s


def _clean(s: str | None) -> str | None:
    if s is None:
        return None
    s = s.strip()
    return s or None


def _parse(text: str) -> str | None:
    text = text[:_MAX_PARSE_CHARS]
    if not text.strip():
        return None
    fenced = [m.group(1) for m in _FENCE.finditer(text) if m.group(1).strip()]
    candidates = [*fenced, text] if fenced else [text]
    for cand in candidates:
        for obj_text in _objects(cand):
            found = _clean(_find_action(_load(obj_text)))
            if found is not None:
                return found
    for cand in candidates:
        m = _KV_QUOTED.search(cand)
        if m:
            found = _clean(
                _unescape(m.group(1), '"') if m.group(1) is not None else _unescape(m.group(2), "'")
            )
            if found is not None:
                return found
        m = _KV_PLAIN.search(cand)
        if m:
            value = m.group(1).strip().rstrip("},.;").strip().strip("`\"'").strip()
            if value:
                return value
    for cand in candidates:
        m = _CALL.search(cand)
        if m:
            return m.group(0)
    # plain text: a short single-line answer is the action
    for cand in candidates:
        lines = [ln.strip() for ln in cand.strip().splitlines() if ln.strip()]
        if len(lines) != 1:
            continue
        value = lines[0].strip("`").strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].strip()
        if value and len(value) <= MAX_PLAIN_ACTION_CHARS and value[0] not in "{[":
            return value
    return None


def parse_agent(response: str) -> str | None:
    """The action text in a model response, or ``None`` when there is none. Never raises.

    Tried in order: a JSON object with an ``action`` key (also inside code fences, with single
    quotes, nested, or followed by junk); an ``"action": "..."`` pair in broken JSON; an
    ``Action: ...`` line; a code-like call such as ``click(ref=3)`` anywhere in the text; finally a
    short (<= 80 chars) single-line answer, which is taken as the action itself.
    """
    try:
        if not isinstance(response, str):
            return None
        return _parse(response)
    except Exception:  # a parser bug must never crash a rollout
        return None
