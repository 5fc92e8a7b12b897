"""Run N copies of a text environment, in this process or one subprocess worker each.

No auto-reset: an env that finished stays finished until the caller resets it (collectors reset
finished envs themselves, and need the final observation). Every method takes ``indices`` to act
on a subset; results come back in the order of ``indices``.

Workers are started with the ``spawn`` context by default (safe with CUDA, threads and browsers),
talk over pipes, and are closed by ``close()`` / ``with`` / garbage collection. A worker that dies
makes the next call raise a ``RuntimeError`` that names its env index.

Each worker leads its own process group, so whatever its env spawned (e.g. a MiniWoB++ browser) is
killed by ``close()`` even when the worker itself was killed (SIGKILL, out of memory) and could not
close its env; SIGTERM makes a worker close its env before exiting.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from vlmq.envs.registry import make, spec

StepResult = tuple[dict[str, Any], float, bool, bool, dict[str, Any]]
ResetResult = tuple[dict[str, Any], dict[str, Any]]


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _worker(index: int, conn: Connection, env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Subprocess loop: build the env, then serve ``(command, payload)`` requests until ``close``."""
    env = None
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # own process group: close() can kill what the env spawned
    signal.signal(signal.SIGTERM, _terminated)  # unwind through ``finally``: env.close()
    try:
        try:
            env = make(env_id, **env_kwargs)
        except Exception as exc:
            conn.send(("err", _describe(exc)))
            return
        conn.send(("ok", None))
        while True:
            cmd, payload = conn.recv()
            if cmd == "close":
                conn.send(("ok", None))
                return
            try:
                if cmd == "reset":
                    result: Any = env.reset(seed=payload)
                elif cmd == "step":
                    result = env.step(payload)
                elif cmd == "call":
                    name, args, kwargs = payload
                    attr = getattr(env, name)
                    result = attr(*args, **kwargs) if callable(attr) else attr
                else:
                    raise ValueError(f"unknown command {cmd!r}")
                conn.send(("ok", result))
            except Exception as exc:
                conn.send(("err", _describe(exc)))
    except (KeyboardInterrupt, EOFError, BrokenPipeError, ConnectionResetError):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if env is not None:
            with contextlib.suppress(Exception):
                env.close()
        conn.close()


class VectorEnv:
    """``num_envs`` copies of ``make(env_id, **env_kwargs)``; see the module docstring."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        asynchronous: bool | None = None,
        env_kwargs: dict[str, Any] | None = None,
        context: str = "spawn",
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        env_spec = spec(env_id)  # unknown ids fail here, before any worker starts
        self.env_id = env_id
        self.num_envs = int(num_envs)
        if asynchronous is None:  # workers where they pay off (EnvSpec.workers)
            asynchronous = self.num_envs > 1 and env_spec.workers
        self.asynchronous = asynchronous
        self.closed = False
        kwargs = dict(env_kwargs or {})
        self.envs: list[Any] = []
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        if not asynchronous:
            self.envs = [make(env_id, **kwargs) for _ in range(self.num_envs)]
            return
        ctx = mp.get_context(context)
        try:
            for i in range(self.num_envs):
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker, args=(i, child, env_id, kwargs), name=f"vlmq-env-{i}", daemon=True
                )
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            for i in range(self.num_envs):
                self._receive(i)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ plumbing
    def _indices(self, indices: Sequence[int] | None) -> list[int]:
        idx = list(range(self.num_envs)) if indices is None else [int(i) for i in indices]
        for i in idx:
            if not 0 <= i < self.num_envs:
                raise IndexError(f"env index {i} out of range for {self.num_envs} envs")
        return idx

    def _dead(self, i: int) -> RuntimeError:
        code = self._procs[i].exitcode
        return RuntimeError(f"VectorEnv worker for env index {i} ({self.env_id}) died (exit code {code})")

    def _send(self, i: int, msg: tuple[str, Any]) -> None:
        try:
            self._conns[i].send(msg)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError) as exc:
            raise self._dead(i) from exc

    def _receive(self, i: int) -> Any:
        conn, proc = self._conns[i], self._procs[i]
        try:
            while not conn.poll(1.0):
                if not proc.is_alive():
                    raise self._dead(i)
            status, payload = conn.recv()
        except (EOFError, ConnectionResetError, OSError) as exc:
            raise self._dead(i) from exc
        if status == "err":
            raise RuntimeError(f"env index {i} ({self.env_id}) raised:\n{payload}")
        return payload

    def _run(self, cmd: str, payloads: list[Any], idx: list[int]) -> list[Any]:
        if self.closed:
            raise RuntimeError("VectorEnv is closed")
        if not self.asynchronous:
            out = []
            for i, payload in zip(idx, payloads, strict=True):
                env = self.envs[i]
                if cmd == "reset":
                    out.append(env.reset(seed=payload))
                elif cmd == "step":
                    out.append(env.step(payload))
                else:
                    name, args, kwargs = payload
                    attr = getattr(env, name)
                    out.append(attr(*args, **kwargs) if callable(attr) else attr)
            return out
        error: RuntimeError | None = None
        sent: list[int] = []
        for i, payload in zip(idx, payloads, strict=True):
            try:
                self._send(i, (cmd, payload))
                sent.append(i)
            except RuntimeError as exc:
                error = error or exc
        results: list[Any] = []
        for i in sent:  # drain every reply (keeps the pipes in sync) before raising the first error
            try:
                results.append(self._receive(i))
            except RuntimeError as exc:
                error = error or exc
        if error is not None:
            raise error
        return results

    # ------------------------------------------------------------------ public API
    def reset(
        self, seeds: Sequence[int | None] | None = None, indices: Sequence[int] | None = None
    ) -> list[ResetResult]:
        """Reset the selected envs (all by default), one seed each (``None``: unseeded)."""
        idx = self._indices(indices)
        seed_list = [None] * len(idx) if seeds is None else list(seeds)
        if len(seed_list) != len(idx):
            raise ValueError(f"got {len(seed_list)} seeds for {len(idx)} envs")
        return self._run("reset", seed_list, idx)

    def step(self, actions: Sequence[str], indices: Sequence[int] | None = None) -> list[StepResult]:
        """Step the selected envs (all by default), one action text each."""
        idx = self._indices(indices)
        if isinstance(actions, str) or len(actions) != len(idx):
            raise ValueError(f"need one action per env: {len(idx)} envs")
        return self._run("step", list(actions), idx)

    def call(self, method: str, *args: Any, indices: Sequence[int] | None = None, **kwargs: Any) -> list[Any]:
        """``env.method(*args, **kwargs)`` on each selected env (an attribute's value if not callable)."""
        idx = self._indices(indices)
        return self._run("call", [(method, args, kwargs)] * len(idx), idx)

    def close(self) -> None:
        """Close every env and stop every worker (idempotent; kills workers that do not exit)."""
        if self.closed:
            return
        self.closed = True
        for env in self.envs:
            with contextlib.suppress(Exception):
                env.close()
        for conn, proc in zip(self._conns, self._procs, strict=False):
            if proc.is_alive():
                with contextlib.suppress(BrokenPipeError, ConnectionResetError, EOFError, OSError):
                    conn.send(("close", None))
        for conn, proc in zip(self._conns, self._procs, strict=False):
            deadline = time.monotonic() + 5
            while proc.is_alive() and time.monotonic() < deadline:
                try:  # discard pending replies: a worker blocked writing one could never exit
                    while conn.poll(0.05):
                        conn.recv()
                except (EOFError, OSError):
                    pass
                proc.join(timeout=0.05)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
            with contextlib.suppress(OSError):  # leftovers of a worker that could not close its env
                os.killpg(proc.pid, signal.SIGKILL)
            conn.close()

    def __enter__(self) -> VectorEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __len__(self) -> int:
        return self.num_envs

    def __repr__(self) -> str:
        mode = "async" if self.asynchronous else "sync"
        return f"VectorEnv({self.env_id!r}, num_envs={self.num_envs}, {mode})"
