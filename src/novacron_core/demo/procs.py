"""Starting, killing and cleaning up real node processes for the local federation.

Every process started here is tracked; :meth:`Supervisor.close` (also on Ctrl-C, via the
context manager) stops them all — SIGTERM first, SIGKILL for stragglers — and removes the
temporary data directory unless the user named one. Nothing is left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any


@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None


class Supervisor:
    def __init__(self, data_dir: str | None = None, prefix: str = "novacron-demo-") -> None:
        self.owns_dir = data_dir is None
        if self.owns_dir:
            self.swept = sweep_stale_dirs(prefix)
        self.base = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix=prefix))
        self.base.mkdir(parents=True, exist_ok=True)
        if self.owns_dir:
            (self.base / OWNER_FILE).write_text(str(os.getpid()))
        self.procs: dict[str, Proc] = {}

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def dir_for(self, name: str) -> Path:
        d = self.base / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        proc = self.procs.get(name)
        if proc is None:
            proc = Proc(name, list(argv), self.dir_for(name) / "process.log", dict(env or {}))
            self.procs[name] = proc
        elif proc.running:
            raise RuntimeError(f"{name} is already running (pid {proc.pid})")
        else:
            proc.restarts += 1
        log = open(proc.log_path, "ab")  # noqa: SIM115 - the child owns it while it runs
        try:
            proc.popen = subprocess.Popen(
                proc.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **proc.env},
                start_new_session=True,  # Ctrl-C in the terminal reaches us, not the nodes
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.popen is not None and proc.popen.poll() is None:
            proc.popen.send_signal(sig)
            proc.popen.wait(timeout=10)

    def restart(self, name: str) -> Proc:
        return self.start(name, self.procs[name].argv, self.procs[name].env)

    def tail(self, name: str, lines: int = 20) -> str:
        try:
            text = self.procs[name].log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(
        self, what: str, cond: Callable[[], bool], timeout: float, interval: float = 0.05
    ) -> float:
        """Poll ``cond`` until true; returns seconds waited. Fails naming what it waited for,
        and the first process that died meanwhile, with its last log lines."""
        start = time.monotonic()
        while True:
            if cond():
                return time.monotonic() - start
            dead = [p for p in self.procs.values() if p.popen is not None and not p.running]
            if (
                dead
                and dead[0].popen is not None
                and dead[0].popen.returncode
                not in (
                    -signal.SIGKILL,
                    -signal.SIGTERM,
                    0,
                )
            ):
                p = dead[0]
                raise RuntimeError(
                    f"{p.name} exited with {p.popen.returncode if p.popen else '?'} while "
                    f"waiting for {what}; its log ({p.log_path}):\n{self.tail(p.name)}"
                )
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(interval)

    def close(self) -> None:
        running = [p for p in self.procs.values() if p.running]
        for p in running:
            assert p.popen is not None
            p.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in running:
            assert p.popen is not None
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(timeout=5)
        if self.owns_dir:
            shutil.rmtree(self.base, ignore_errors=True)


OWNER_FILE = "supervisor.pid"


def sweep_stale_dirs(prefix: str) -> list[Path]:
    """Remove temp dirs of earlier supervisors that died without cleaning up (kill -9):
    those whose owner file names a process that no longer exists."""
    removed = []
    for d in Path(tempfile.gettempdir()).glob(prefix + "*"):
        try:
            pid = int((d / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being set up
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        except PermissionError:
            pass  # alive, someone else's
    return removed


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # loaded in the parent: the child only calls it between fork and exec
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, SIGTERM when the supervisor dies, even by
    kill -9, so that no node outlives a demo that could not clean up."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def python_module_argv(module: str, *args: str) -> list[str]:
    """Run a module of this package with the same interpreter (works before install too)."""
    return [sys.executable, "-m", module, *args]
