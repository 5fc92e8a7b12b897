"""The MiniWoB++ gymnasium env: one task (from ``miniwob``, headless Debian Chromium) behind the
TextEnv protocol.

Observation: the 160x210 task screenshot plus text: the utterance and a compact list of the visible
DOM elements, one per line: ``[ref] tag "text" x,y,w,h`` (integers, CSS px in the screenshot's
frame; a trailing ``checked``/``focused``/``value="..."`` when relevant). Plain text fragments have
no usable ref and are listed as ``- "text" x,y,w,h``. Invisible/zero-size elements, elements outside
the task area and text-less wrappers are skipped; the list is capped at ``max_elements`` lines.

Actions (code-like, one per turn, anything else is invalid):

- ``click(ref=N)``                 click the DOM element with ref N (must be in the current DOM);
- ``click(x=X, y=Y)``              click at pixel (X, Y), clipped to 160x210;
- ``type(ref=N, text="...")``      focus element N, replace its content (Ctrl+A) and type the text;
- ``press("Enter")``               press a key: ``Enter``, ``Tab``, ``Backspace``, ``ArrowUp``, ...,
  a single character, or a combination such as ``C-a`` (miniwob's syntax).

Rewards are MiniWoB's raw +1 (success) / -1 (failure) at the end of an episode, 0 before.
Invalid text costs ``invalid_penalty`` (default 0) and consumes a turn; after ``max_turns`` turns
(default 10) the episode is truncated. The page's real-time limit (``core.EPISODE_MAX_TIME``) is
raised to one hour, so a slow policy never times out.

Browser hygiene: the browser starts at the first ``reset``; it is closed by ``close()``, by garbage
collection and at interpreter exit (a ``weakref.finalize``), and leftover chromedriver/chromium
processes are killed. If the browser dies mid-episode, ``step`` ends the episode as a failure
(reward -1, ``info["browser_crashed"]``) and the next ``reset`` starts a fresh browser. The
processes themselves are managed by :mod:`vlmq.envs.miniwob.browser`.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from vlmq.envs.base import Observation, TextEnv, Transition
from vlmq.envs.miniwob.browser import Browser, configure_browser
from vlmq.envs.registry import doc_description

# the featured tasks (the short `vlmq envs` listing), each solved by the scripted DOM expert
TASKS: dict[str, str] = {
    "click-test": "Click the single button.",
    "click-test-2": "Click the button named in the instruction (one of two).",
    "click-button": "Click the button with the given label among text and buttons.",
    "click-link": "Click the link with the given text inside a paragraph.",
    "click-tab": "Click the tab with the given number.",
    "click-dialog": "Close a dialog box by clicking its 'x'.",
    "click-checkboxes": "Tick exactly the named checkboxes, then click Submit.",
    "click-option": "Select the named radio option, then click Submit.",
    "focus-text": "Focus the text box.",
    "enter-text": "Type the given text into the text field and click Submit.",
}

_DRAG = "unsupported: needs mouse dragging"
_SCROLL = "unsupported: needs scrolling"
_PAGE = "unsupported: a 375x667 page; the observation space and clicks assume the 160x210 frame"
# tasks that need actions outside click/type/press (no drag or scroll action): task -> the note
# `vlmq envs` shows; they still run (random policy), but cannot be solved through the action space
UNSUPPORTED: dict[str, str] = {
    **dict.fromkeys(
        [
            "drag-box", "drag-circle", "drag-cube", "drag-items", "drag-items-grid", "drag-shapes",
            "drag-shapes-2", "drag-single-shape", "drag-sort-numbers", "draw-circle", "draw-line",
            "resize-textarea",
        ],
        _DRAG,
    ),
    "highlight-text": "unsupported: needs text selection by dragging",
    "highlight-text-2": "unsupported: needs text selection by dragging",
    **dict.fromkeys(
        ["scroll-text", "scroll-text-2", "click-scroll-list", "email-inbox", "email-inbox-nl-turk"], _SCROLL
    ),
    **dict.fromkeys(["flight.AA", "flight.Alaska", "flight.Alaska-auto"], _PAGE),
}  # fmt: skip

TASK_WIDTH, TASK_HEIGHT = 160, 210
_SHORT_TAGS = {
    "input_text": "input",
    "input_password": "password",
    "input_checkbox": "checkbox",
    "input_radio": "radio",
    "input_number": "number",
    "input_submit": "submit",
    "input_button": "button",
}
_INTERACTIVE = ("button", "a", "select", "textarea", "input_")
_KEY_ALIASES = {"ctrl+": "C-", "control+": "C-", "shift+": "S-", "alt+": "A-", "meta+": "M-", "cmd+": "M-"}

# --------------------------------------------------------------------------------- parsing

_NUM = r"(-?\d+(?:\.\d+)?)"
_STR = r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
_RE_CLICK_REF = re.compile(r"click\(\s*(?:ref\s*=\s*)?[\"']?(-?\d+)[\"']?\s*\)")
_RE_CLICK_XY = re.compile(rf"click\(\s*(?:x\s*=\s*)?{_NUM}\s*,\s*(?:y\s*=\s*)?{_NUM}\s*\)")
_RE_TYPE = re.compile(rf"type\(\s*(?:ref\s*=\s*)?[\"']?(-?\d+)[\"']?\s*,\s*(?:text\s*=\s*)?{_STR}\s*\)")
_RE_PRESS = re.compile(rf"press\(\s*(?:key\s*=\s*)?(?:{_STR}|([\w<>+\-]+))\s*\)")


def _normalize_key(key: str, allowed: set[str]) -> str | None:
    """``"Enter"`` -> ``"<Enter>"``, ``"ctrl+a"`` -> ``"C-a"``; ``None`` when not a known key."""
    from miniwob.constants import WEBDRIVER_SPECIAL_KEYS

    prefix = ""
    rest = key.strip()
    while True:
        low = rest.lower()
        alias = next((a for a in _KEY_ALIASES if low.startswith(a)), None)
        if alias is not None:
            prefix += _KEY_ALIASES[alias]
            rest = rest[len(alias) :]
        elif len(rest) > 2 and rest[:2] in ("C-", "S-", "A-", "M-"):
            prefix += rest[:2]
            rest = rest[2:]
        else:
            break
    if len(rest) != 1:
        name = rest.strip("<>").lower()
        match = next((k for k in WEBDRIVER_SPECIAL_KEYS if k[1:-1].lower() == name), None)
        if match is None:
            return None
        rest = match
    combo = prefix + rest
    return combo if (combo in allowed or prefix) else None


# --------------------------------------------------------------------------------- the env


class MiniWoBEnv(TextEnv):
    """One MiniWoB++ task; subclasses (one per task, see :func:`tasks`) only set ``task``."""

    task: str = "click-test"
    image_shape = (TASK_HEIGHT, TASK_WIDTH, 3)
    goal = (
        "You control a web browser; the image is a 160x210 screenshot of a small web page. "
        "Follow the instruction given in the text."
    )
    action_doc = (
        "Answer with one action: click(ref=N) clicks the element [N] of the element list; "
        'click(x=X, y=Y) clicks at pixel (X, Y); type(ref=N, text="...") replaces the content of '
        'input [N] with the text; press("Enter") presses a key.'
    )
    action_example = "click(ref=4)"

    def __init__(
        self,
        invalid_penalty: float = 0.0,
        max_turns: int | None = 10,
        max_elements: int = 40,
        max_text: int = 40,
    ) -> None:
        super().__init__(invalid_penalty=invalid_penalty, max_turns=max_turns)
        configure_browser()  # fail early with a clear message when the binaries are missing
        self.max_elements = int(max_elements)
        self.max_text = int(max_text)
        self._browser = Browser(self.task)
        self._finalizer = weakref.finalize(self, self._browser.close)
        self._seed: int | None = None
        self._utterance = ""
        self._fields: dict[str, str] = {}
        self._elements: list[dict[str, Any]] = []
        self._screenshot = np.zeros(self.image_shape, dtype=np.uint8)
        self._done = False
        self._crashed = False

    # ----------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self._browser.close()

    def browser_pids(self) -> list[int]:
        """Live chromedriver/chromium process ids of this env (empty before the first reset)."""
        return self._browser.pids()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        self._seed = seed
        return super().reset(seed=seed, options=options)

    def _reset(self, options: dict[str, Any] | None) -> None:
        seed = self._seed if self._seed is not None else int(self.np_random.integers(2**31 - 1))
        self._seed = None
        for attempt in range(2):
            try:
                if self._browser.env is None or self._browser.dead or self._crashed:
                    self._browser.start()
                obs, _ = self._browser.env.reset(seed=seed)
                break
            except Exception:
                self._browser.dead = not self._browser.alive()
                self._browser.close()
                if attempt == 1:
                    raise
        self._crashed = False
        self._done = False
        self._utterance = str(obs["utterance"])
        self._fields = {str(k): str(v) for k, v in obs["fields"]}
        self._update(obs)

    def _update(self, obs: dict[str, Any]) -> None:
        self._elements = [self._element(e) for e in obs["dom_elements"]]
        self._screenshot = np.asarray(obs["screenshot"], dtype=np.uint8)

    @staticmethod
    def _element(e: dict[str, Any]) -> dict[str, Any]:
        box = [round(float(np.asarray(e[k]).reshape(-1)[0])) for k in ("left", "top", "width", "height")]
        return {
            "ref": int(e["ref"]),
            "parent": int(e["parent"]),
            "tag": str(e["tag"]),
            "text": str(e["text"] or "").strip(),
            "value": str(e["value"] or ""),
            "id": str(e["id"] or ""),
            "classes": str(e["classes"] or ""),
            "box": box,
            "focused": bool(np.asarray(e["flags"]).reshape(-1)[0]),
        }

    # ----------------------------------------------------------------- observation
    def _observe(self) -> tuple[np.ndarray, str]:
        lines = [f"Instruction: {self._utterance}"]
        if self._done:
            lines.append("The episode is over.")
        else:
            lines.append("Elements:")
            lines.extend(self._element_lines())
        return self._screenshot, "\n".join(lines)

    def _labels(self) -> dict[int, str]:
        """Text of each checkbox/radio: the text fragments sharing its parent (its <label>)."""
        by_parent: dict[int, list[str]] = {}
        for e in self._elements:
            if e["tag"] == "t":
                by_parent.setdefault(e["parent"], []).append(e["text"])
        return {
            e["ref"]: " ".join(by_parent.get(e["parent"], []))
            for e in self._elements
            if e["tag"] in ("input_checkbox", "input_radio")
        }

    def _element_lines(self) -> list[str]:
        labels = self._labels()
        absorbed = {e["parent"] for e in self._elements if e["ref"] in labels and labels[e["ref"]]}
        lines: list[str] = []
        for e in self._elements:
            x, y, w, h = e["box"]
            tag = e["tag"]
            if tag == "body" or w <= 0 or h <= 0:
                continue
            if x >= TASK_WIDTH or y >= TASK_HEIGHT or x + w <= 0 or y + h <= 0:
                continue
            interactive = tag.startswith(_INTERACTIVE)
            text = labels.get(e["ref"]) or e["text"]
            if tag == "t" and e["parent"] in absorbed:
                continue
            if not text and not interactive:
                continue
            if not text and not tag.startswith("input_"):  # e.g. an icon-only close button
                text = e["id"] or (e["classes"].split() or [""])[-1]
            text = text if len(text) <= self.max_text else text[: self.max_text - 3] + "..."
            box = f"{x},{y},{w},{h}"
            if tag == "t":
                lines.append(f"- {json.dumps(text)} {box}")
                continue
            extra = ""
            if tag in ("input_checkbox", "input_radio"):
                extra = " checked" if e["value"] == "True" else ""
            elif tag.startswith("input_") or tag == "textarea":
                extra = f" value={json.dumps(e['value'][: self.max_text])}" if e["value"] else ""
            if e["focused"]:
                extra += " focused"
            lines.append(f"[{e['ref']}] {_SHORT_TAGS.get(tag, tag)} {json.dumps(text)} {box}{extra}")
        if len(lines) > self.max_elements:
            lines = [*lines[: self.max_elements], f"... ({len(lines) - self.max_elements} more)"]
        return lines

    # ----------------------------------------------------------------- actions
    def parse_env(self, text: str) -> tuple[Any, ...] | None:
        s = text.strip().strip("`").strip().rstrip(";").strip()
        if m := _RE_CLICK_REF.fullmatch(s):
            ref = int(m.group(1))
            return ("click", ref) if self._has_ref(ref) else None
        if m := _RE_CLICK_XY.fullmatch(s):
            x = float(np.clip(float(m.group(1)), 0, TASK_WIDTH - 1))
            y = float(np.clip(float(m.group(2)), 0, TASK_HEIGHT - 1))
            return ("click_xy", round(x), round(y))
        if m := _RE_TYPE.fullmatch(s):
            ref = int(m.group(1))
            value = ast.literal_eval(m.group(2))
            return ("type", ref, str(value)) if self._has_ref(ref) else None
        if m := _RE_PRESS.fullmatch(s):
            raw = ast.literal_eval(m.group(1)) if m.group(1) else m.group(2)
            key = _normalize_key(str(raw), self._allowed_keys())
            return ("press", key) if key else None
        return None

    def _has_ref(self, ref: int) -> bool:
        return ref > 0 and any(e["ref"] == ref for e in self._elements)

    @staticmethod
    def _allowed_keys() -> set[str]:
        from miniwob.constants import DEFAULT_ALLOWED_KEYS

        return set(DEFAULT_ALLOWED_KEYS)

    def format_action(self, action: Any) -> str:
        kind = action[0]
        if kind == "click":
            return f"click(ref={action[1]})"
        if kind == "click_xy":
            return f"click(x={action[1]}, y={action[2]})"
        if kind == "type":
            return f"type(ref={action[1]}, text={json.dumps(action[2])})"
        return f"press({json.dumps(action[1].strip('<>') if len(action[1]) > 1 else action[1])})"

    def _perform(self, action: tuple[Any, ...]) -> str:
        """Run the action in the browser; return the feedback sentence."""
        from miniwob.selenium_actions import execute_click_coords, execute_press_key, execute_type_text

        driver = self._browser.driver
        kind = action[0]
        if kind in ("click", "type"):
            result = driver.execute_script(f"return core.elementClick({int(action[1])});")
            target = self._describe(action[1])
            if result is not True:
                return f"Clicking {target} failed."
            if kind == "click":
                return f"You clicked {target}."
            execute_press_key("C-a", driver)
            execute_type_text(action[2], driver)
            return f"You typed {json.dumps(action[2])} into {target}."
        if kind == "click_xy":
            execute_click_coords(float(action[1]), float(action[2]), driver)
            return f"You clicked at ({action[1]}, {action[2]})."
        execute_press_key(action[1], driver)
        return f"You pressed {action[1].strip('<>') if len(action[1]) > 1 else action[1]}."

    def _describe(self, ref: int) -> str:
        e = next((e for e in self._elements if e["ref"] == ref), None)
        if e is None:
            return f"[{ref}]"
        text = self._labels().get(ref) or e["text"]
        return f"[{ref}] {_SHORT_TAGS.get(e['tag'], e['tag'])}" + (
            f" {json.dumps(text[:30])}" if text else ""
        )

    def _apply(self, action: tuple[Any, ...]) -> Transition:
        from miniwob.reward import get_raw_reward

        if self._done:
            return Transition(reward=0.0, terminated=True, feedback="The episode is already over.")
        instance = self._browser.env.instance
        try:
            feedback = self._perform(action)
            metadata = instance.get_metadata()
            done = bool(metadata["done"])
            if not done:
                obs, _ = instance.get_observation(use_cached_fields=True)
                self._update(obs)
        except Exception as exc:
            if self._browser.alive():  # the browser is fine; the action itself failed
                return Transition(reward=0.0, feedback=f"The action failed ({type(exc).__name__}).")
            self._browser.dead = True
            self._crashed = self._done = True
            return Transition(reward=-1.0, terminated=True, feedback="The browser crashed; the task failed.")
        if not done:
            return Transition(reward=0.0, feedback=feedback)
        self._done = True
        reward = float(get_raw_reward(metadata))
        outcome = "Task succeeded." if reward > 0 else "Task failed."
        return Transition(
            reward=reward, terminated=True, feedback=f"{feedback} {outcome}", strict_success=reward > 0
        )

    def step(self, action: str) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        info["browser_crashed"] = self._crashed
        return obs, reward, terminated, truncated, info

    # ----------------------------------------------------------------- scripted policies
    def valid_actions(self) -> list[str]:
        """Clicks on every listed element, typing a quoted instruction string into inputs, Enter."""
        acts: list[str] = []
        words = re.findall(r'"([^"]+)"', self._utterance) or list(self._fields.values())[:1] or ["text"]
        for e in self._elements:
            if e["ref"] <= 0 or e["tag"] == "body" or min(e["box"][2:]) <= 0:
                continue
            if e["box"][0] >= TASK_WIDTH or e["box"][1] >= TASK_HEIGHT:
                continue
            if not (e["text"] or e["tag"].startswith(_INTERACTIVE)):
                continue
            acts.append(f"click(ref={e['ref']})")
            if e["tag"] in ("input_text", "input_password", "textarea"):
                acts.extend(f"type(ref={e['ref']}, text={json.dumps(w)})" for w in words)
        acts.append('press("Enter")')
        return acts

    def expert_action(self) -> str:
        """A DOM-reading scripted solution for each task in ``TASKS``; a random action elsewhere."""
        try:
            act = self._expert()
        except Exception:  # a DOM the script does not expect: act randomly rather than crash
            act = None
        return act or self.random_action()

    def _find(self, tag: str | None = None, text: str | None = None, cls: str | None = None) -> int | None:
        labels = self._labels()
        for e in self._elements:
            if e["ref"] <= 0 or (tag is not None and e["tag"] != tag):
                continue
            if text is not None and (labels.get(e["ref"]) or e["text"]) != text:
                continue
            if cls is not None and cls not in e["classes"].split():
                continue
            return e["ref"]
        return None

    def _expert(self) -> str | None:
        task, fields = self.task, self._fields
        target = fields.get("target")
        ref: int | None = None
        if task == "click-test":
            ref = self._find("button")
        elif task in ("click-test-2", "click-button"):
            ref = self._find("button", target)
        elif task == "click-link":
            ref = self._find(None, target, "alink") or self._find("a", target)
        elif task == "click-tab":
            ref = self._find("a", f"Tab #{target}")
        elif task == "click-dialog":
            ref = self._find("button", None, "ui-dialog-titlebar-close")
        elif task == "focus-text":
            ref = self._find("input_text")
        elif task in ("click-checkboxes", "click-option"):
            kind = "input_checkbox" if task == "click-checkboxes" else "input_radio"
            wanted = {v for k, v in fields.items() if k.startswith("target")}
            labels = self._labels()
            for e in self._elements:
                if e["tag"] == kind and (e["value"] == "True") != (labels.get(e["ref"]) in wanted):
                    if kind == "input_radio" and e["value"] == "True":
                        continue  # ticking the right radio unticks this one
                    return f"click(ref={e['ref']})"
            ref = self._find("button", "Submit")
        elif task == "enter-text":
            box = next((e for e in self._elements if e["tag"] == "input_text"), None)
            if box is not None and target is not None and box["value"] != target:
                return f"type(ref={box['ref']}, text={json.dumps(target)})"
            ref = self._find("button", "Submit")
        return None if ref is None else f"click(ref={ref})"


def _class_docs(module: str) -> dict[str, tuple[str, str]]:
    """``{class name: (subdomain, docstring)}`` of a miniwob module, read with ``ast``: importing the
    module would import selenium."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return {}
    out: dict[str, tuple[str, str]] = {}
    for node in ast.parse(Path(spec.origin).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef):
            sub = next(
                (
                    st.value.value
                    for st in node.body
                    if isinstance(st, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "subdomain" for t in st.targets)
                    and isinstance(st.value, ast.Constant)
                ),
                "",
            )
            out[node.name] = (str(sub), ast.get_docstring(node) or "")
    return out


def tasks() -> dict[str, str]:
    """Every task the installed ``miniwob`` registers: ``{"click-shape": "<one-line description>", ...}``."""
    import gymnasium as gym
    import miniwob  # noqa: F401  (registers the miniwob/* gymnasium ids; does not import selenium)

    docs: dict[str, dict[str, tuple[str, str]]] = {}
    out: dict[str, str] = {}
    for gym_id, env_spec in gym.registry.items():
        if not gym_id.startswith("miniwob/"):
            continue
        task, doc = gym_id[len("miniwob/") :].rsplit("-v", 1)[0], ""
        if isinstance(env_spec.entry_point, str) and ":" in env_spec.entry_point:
            module, name = env_spec.entry_point.split(":")
            if module not in docs:
                docs[module] = _class_docs(module)
            sub, doc = docs[module].get(name, ("", ""))
            task = sub or task
        out[task] = doc_description(doc) or f"MiniWoB++ task {task}."
    return dict(sorted(out.items()))


__all__ = ["TASKS", "UNSUPPORTED", "MiniWoBEnv", "tasks"]
