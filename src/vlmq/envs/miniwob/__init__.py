"""MiniWoB++ tasks behind the TextEnv protocol: the env (:mod:`.env`) and the browser processes it
drives (:mod:`.browser`). Importing the package registers every task of the installed ``miniwob``
(one :class:`MiniWoBEnv` subclass per task, defined here so that it pickles by reference); it never
imports selenium or starts a browser.
"""

from __future__ import annotations

import re

from vlmq.envs.miniwob.browser import EPISODE_MAX_TIME_MS, configure_browser, process_tree
from vlmq.envs.miniwob.env import TASKS, UNSUPPORTED, MiniWoBEnv, tasks
from vlmq.envs.registry import register


def _make_task_class(task: str) -> type[MiniWoBEnv]:
    name = "MiniWoB" + "".join(p.capitalize() for p in re.split(r"[-.]", task)) + "Env"
    cls = type(name, (MiniWoBEnv,), {"task": task, "env_id": f"miniwob/{task}"})
    cls.__module__ = __name__
    cls.__doc__ = f"MiniWoB++ task {task}."
    globals()[name] = cls  # picklable by reference
    return cls


for _task, _desc in tasks().items():
    register(
        f"miniwob/{_task}",
        _make_task_class(_task),
        TASKS.get(_task, _desc),
        workers=True,
        featured=_task in TASKS,
        expert=_task in TASKS,
        note=UNSUPPORTED.get(_task, ""),
        aliases=(f"miniwob/{_task}-v1",),
    )

__all__ = [
    "EPISODE_MAX_TIME_MS",
    "TASKS",
    "UNSUPPORTED",
    "MiniWoBEnv",
    "configure_browser",
    "process_tree",
    "tasks",
]
