"""Browser process management for the MiniWoB++ domain: local Debian Chromium + ChromeDriver, and
one :class:`Browser` (a miniwob environment) whose processes never outlive it.

:func:`configure_browser` points miniwob at the local binaries (through a wrapper script that adds
the offline-hygiene :data:`CHROMIUM_FLAGS`). A :class:`Browser` remembers every process its
chromedriver spawned (``psutil`` guards against pid reuse); :meth:`Browser.close` quits the driver,
then kills whatever is left. A failed start kills the processes it launched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import psutil

EPISODE_MAX_TIME_MS = 3600 * 1000  # the page's real-time limit (``core.EPISODE_MAX_TIME``): one hour
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
)
_CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")


def _chromium_wrapper(chromium: str) -> str:
    """Write (once) a shell wrapper adding the offline-hygiene flags; return its path."""
    script = "#!/bin/sh\nexec " + chromium + " " + " ".join(CHROMIUM_FLAGS) + ' "$@"\n'
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vlmq"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = Path(tempfile.gettempdir()) / f"vlmq-{os.getuid()}"
        cache.mkdir(parents=True, exist_ok=True)
    path = cache / "chromium-wrapper.sh"
    if not path.exists() or path.read_text() != script:
        tmp = cache / f".chromium-wrapper.{os.getpid()}.tmp"
        tmp.write_text(script)
        tmp.chmod(0o755)
        os.replace(tmp, path)
    return str(path)


def configure_browser() -> tuple[str, str]:
    """Point miniwob at local binaries (env vars); return ``(chrome_binary, chromedriver)``.

    Honours ``MINIWOB_CHROMEDRIVER`` / ``MINIWOB_CHROME_BINARY`` when set. Raises ``RuntimeError``
    with install instructions when chromium or chromedriver is missing.
    """
    hint = "install them with: apt-get install -y chromium chromium-driver (see scripts/install.sh)"
    driver = os.environ.get("MINIWOB_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not os.access(driver, os.X_OK):
        raise RuntimeError(f"MiniWoB++ needs chromedriver, not found at {driver!r}; {hint}")
    binary = os.environ.get("MINIWOB_CHROME_BINARY")
    if binary:
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"MINIWOB_CHROME_BINARY={binary!r} is not executable; {hint}")
    else:
        chromium = next((c for c in _CHROMIUM_CANDIDATES if os.access(c, os.X_OK)), None)
        if chromium is None:
            raise RuntimeError(f"MiniWoB++ needs chromium, none of {_CHROMIUM_CANDIDATES} found; {hint}")
        binary = _chromium_wrapper(chromium)
    os.environ["MINIWOB_CHROME_BINARY"] = binary
    os.environ["MINIWOB_CHROMEDRIVER"] = driver
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    return binary, driver


def _running(proc: psutil.Process) -> bool:
    """``proc`` still runs (the same process: psutil checks that its pid was not reused) and is not a
    zombie."""
    try:
        return proc.is_running() and proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        children = []
    return [pid, *(c.pid for c in children)]


class Browser:
    """One miniwob environment (chromedriver + chromium) and the processes it spawned."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.env: Any = None
        self.dead = False
        self._procs: dict[int, psutil.Process] = {}

    def start(self) -> None:
        from miniwob.environment import MiniWoBEnvironment
        from miniwob.reward import get_raw_reward

        self.close()
        configure_browser()
        before = set(process_tree(os.getpid()))
        try:
            self.env = MiniWoBEnvironment(subdomain=self.task, reward_processor=get_raw_reward)
            self.driver.execute_script(f"core.EPISODE_MAX_TIME = {EPISODE_MAX_TIME_MS};")
        except BaseException:  # also KeyboardInterrupt: never leave a browser behind
            for pid in set(process_tree(os.getpid())) - before:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            self.env = None
            raise
        self.dead = False
        self._remember()

    @property
    def driver(self) -> Any:
        return self.env.instance.driver

    def driver_pid(self) -> int | None:
        with contextlib.suppress(Exception):
            return int(self.driver.service.process.pid)
        return None

    def pids(self) -> list[int]:
        """Live chromedriver + chromium processes of this browser."""
        self._remember()
        return [p for p, proc in self._procs.items() if _running(proc)]

    def _remember(self) -> None:
        pid = self.driver_pid() if self.env is not None else None
        if pid is None:
            return
        for p in process_tree(pid):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(p)
                if _running(proc):
                    self._procs.setdefault(p, proc)

    def alive(self) -> bool:
        try:
            return self.driver.execute_script("return 1;") == 1
        except Exception:
            return False

    def close(self) -> None:
        """Quit the driver and kill anything it left; safe to call many times."""
        if self.env is None:
            return
        self._remember()
        service = None
        with contextlib.suppress(Exception):
            service = self.driver.service
        if not self.dead:
            with contextlib.suppress(Exception):
                self.driver.quit()
        with contextlib.suppress(Exception):
            self.env.instance.died = True
        for proc in self._procs.values():
            if _running(proc):
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        if service is not None:  # reap chromedriver (our child) so no zombie remains
            with contextlib.suppress(Exception):
                service.process.wait(timeout=5)
        self._procs.clear()
        self.env = None


__all__ = ["CHROMIUM_FLAGS", "EPISODE_MAX_TIME_MS", "Browser", "configure_browser", "process_tree"]
