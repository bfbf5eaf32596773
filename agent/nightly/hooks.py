"""Per-source pre/post hooks: shell snippets run around a source's backup, e.g. an LVM snapshot:

    pre  = "lvcreate -s -n nightly -L 5G vg0/root"
    path = "/dev/vg0/nightly"
    post = "lvremove -f vg0/nightly"

Commands run through `/bin/sh -c` on purpose: they are admin-written shell snippets from a root-owned
config file, the same trust as a crontab line. Each hook runs in its own process group so a timeout
kills everything it started, not just the shell. A failing hook never raises; it returns a result whose
one-line message names the hook and the source.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.config import env
from agent.config.secrets import is_secret

TAIL_LINES = 20
_TAIL_BYTES = 64 * 1024       # bound memory for chatty hooks; the tail is all we report
_KILL_GRACE_S = 5.0           # between SIGTERM and SIGKILL of the hook's process group
_DRAIN_S = 1.0                # output still arriving after the shell exited (background children)


class HookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pre: str | None = None    # before the source is read; failure skips the source
    post: str | None = None   # after the backup, whatever its outcome (AGENT_STATUS says which)
    timeout_s: float = Field(600.0, gt=0)


@dataclass
class HookResult:
    ok: bool
    exit_code: int | None     # None when it could not start or timed out; negative: killed by that signal
    output_tail: str          # last lines of combined stdout+stderr
    error_message: str | None  # one line, e.g. "pre hook for system-disk failed with exit status 5: ..."


def hook_env(hook: Literal["pre", "post"], source_name: str, source_path: str,
             status: str | None = None) -> dict[str, str]:
    """The AGENT_* variables a hook sees: which source, which hook, and for post the backup's status."""
    values = {env.HOOK: hook, env.SOURCE_NAME: source_name, env.SOURCE_PATH: source_path}
    if status is not None:
        values[env.STATUS] = status
    return values


def run_source_hook(cfg: HookConfig, hook: Literal["pre", "post"], source_name: str, source_path: str,
                    status: str | None = None, hide: Iterable[str] = ()) -> HookResult | None:
    """The configured pre or post hook of a source, or None when there is none."""
    command = cfg.pre if hook == "pre" else cfg.post
    if not command:
        return None
    return run_hook(command, timeout_s=cfg.timeout_s, env=hook_env(hook, source_name, source_path, status),
                    what=f"{hook} hook for {source_name}", hide=hide)


def run_hook(command: str, *, timeout_s: float, env: dict[str, str], what: str,
             hide: Iterable[str] = ()) -> HookResult:
    """Run `command` with `env` added to our environment minus `hide` (e.g. the config's backend
    credentials) and every variable that holds a secret (agent.config.secrets: the passphrase,
    storage credentials, *_PASSWORD, *_TOKEN, ...); kill its whole process group after `timeout_s`.
    A hook has no business with them, and its output goes into logs and notifications."""
    hidden = set(hide)
    full_env = {k: v for k, v in os.environ.items() if k not in hidden and not is_secret(k)}
    full_env.update(env)
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=full_env, cwd="/", start_new_session=True)
    except OSError as exc:
        return HookResult(False, None, "", f"{what} could not start: {exc.strerror or exc}")
    with proc:
        raw, timed_out = _collect(proc, time.monotonic() + timeout_s)
        if timed_out:
            _kill_group(proc)
    tail = _tail(raw)
    last = tail.splitlines()[-1].strip() if tail else ""
    if timed_out:
        return HookResult(False, None, tail, f"{what} timed out after {timeout_s:g} s")
    code = proc.returncode
    if code == 0:
        return HookResult(True, 0, tail, None)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        message = f"{what} was killed by {name}"
    else:
        message = f"{what} failed with exit status {code}"
    return HookResult(False, code, tail, f"{message}: {last}" if last else message)


def _collect(proc: subprocess.Popen, deadline: float) -> tuple[bytes, bool]:
    """Read output until the shell exits (plus a short drain) or the deadline; (output tail, timed out).

    Waiting for EOF alone would hang on a background child that keeps the pipe open."""
    buf = bytearray()
    assert proc.stdout is not None  # started with stdout=PIPE
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    exited_at = None
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        eof = False
        while True:
            now = time.monotonic()
            if proc.poll() is not None:
                exited_at = exited_at or now
                if eof or now - exited_at >= _DRAIN_S:
                    return bytes(buf), False
            elif now >= deadline:
                return bytes(buf), True
            if eof:  # pipe closed but the shell still runs: just wait for it
                time.sleep(min(0.05, max(0.0, deadline - now)))
                continue
            if sel.select(timeout=min(0.1, max(0.0, deadline - now))):
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    eof = True
                    sel.unregister(fd)
                buf += chunk
                del buf[:-_TAIL_BYTES]


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the hook's process group, then SIGKILL whatever is left after a grace period."""
    pgid = proc.pid  # start_new_session: the shell leads its own group
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + _KILL_GRACE_S
    while time.monotonic() < end:
        proc.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _tail(raw: bytes) -> str:
    lines = deque(raw.decode("utf-8", errors="replace").splitlines(), maxlen=TAIL_LINES)
    return "\n".join(line.rstrip()[:500] for line in lines)
