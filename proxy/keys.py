"""API keys: who may call the proxy, under which name, within which limits.

``AUTH_API_KEY`` is one key, named ``default``. ``AUTH_KEYS_FILE`` holds more,
one per line: ``name key [max_concurrent=N] [rpm=N] [tpm=N]`` (``#`` starts a
comment; the limits are counted by :mod:`proxy.limits`). The
file is re-read when it changes (its size, time or inode; looked at every
second) and on SIGHUP. A reload never touches requests in flight: a removed
key's streams run to their end, and its next request gets a 401. A file that
does not parse stops the proxy at startup; on reload it is logged and the
keys in use stay.

A key's name, never the key, goes into logs and the ``key`` label of the
metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, Settings
from .errors import ProxyError
from .limits import KeyLimits

__all__ = ["NO_KEY", "Keys", "read_keys_file"]

log = logging.getLogger("proxy")
NO_KEY = "-"  # the name used when auth is off
_POLL_SECONDS = 1.0
_LIMITS = ("max_concurrent", "rpm", "tpm")


@dataclass(frozen=True, slots=True)
class _Key:
    name: str
    secret: bytes
    limits: KeyLimits | None


def read_keys_file(path: Path) -> list[_Key]:
    """The keys in ``path``.

    Raises:
        ConfigError: naming the file and line at fault.
    """
    keys: list[_Key] = []
    names: set[str] = set()
    secrets: set[bytes] = set()
    text = path.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) < 2:
            raise ConfigError(f"{where}: expected 'name key [max_concurrent=N] [rpm=N] [tpm=N]'")
        name, secret, *options = fields
        limits: dict[str, int] = {}
        for option in options:
            key, _, value = option.partition("=")
            if key not in _LIMITS or not value.isdigit() or int(value) < 1:
                raise ConfigError(
                    f"{where}: unknown option {option!r} (max_concurrent=N, rpm=N, tpm=N; N >= 1)"
                )
            limits[key] = int(value)
        if name in names or name in (NO_KEY, "default"):
            raise ConfigError(f"{where}: the name {name!r} is taken")
        if secret.encode() in secrets:
            raise ConfigError(f"{where}: the key of {name!r} is already another name's")
        names.add(name)
        secrets.add(secret.encode())
        keys.append(_Key(name, secret.encode(), KeyLimits(**limits) if limits else None))
    return keys


class Keys:
    """The accepted keys and their limits."""

    def __init__(self, settings: Settings) -> None:
        self._single = settings.auth_api_key
        self._path = Path(settings.auth_keys_file) if settings.auth_keys_file else None
        self._stamp: tuple[int, int, int] | None = None
        self._keys: list[_Key] = []
        self._limits: dict[str, KeyLimits] = {}  # for the keys that have any
        self._task: asyncio.Task[None] | None = None
        self._load(startup=True)

    @property
    def enabled(self) -> bool:
        return self._single is not None or self._path is not None

    async def start(self) -> None:
        if self._path is None:
            return
        self._task = asyncio.create_task(self._watch())
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            # Only the main thread of a process can take signals (not tests' servers).
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    def name_of(self, presented: str) -> str:
        """The name of the key the client presented.

        Every key is compared, each in constant time, so the time taken says nothing
        about which key came close.

        Raises:
            ProxyError: 401 when keys are required and this is none of them.
        """
        if not self.enabled:
            return NO_KEY
        given = presented.encode()
        found = None
        for key in self._keys:
            if hmac.compare_digest(given, key.secret) and found is None:
                found = key.name
        if found is None:
            raise ProxyError(401, "invalid or missing API key", code="invalid_api_key")
        return found

    def limits(self, name: str) -> KeyLimits | None:
        """The limits of the key named ``name`` (None: it has none)."""
        return self._limits.get(name)

    @property
    def limited(self) -> bool:
        """Whether any key has a limit."""
        return bool(self._limits)

    def reload(self) -> None:
        self._load(startup=False)

    def _load(self, startup: bool) -> None:
        keys = [_Key("default", self._single.encode(), None)] if self._single else []
        if self._path is not None:
            try:
                stamp: tuple[int, int, int] | None = _stamp(self._path)
            except OSError:
                stamp = None
            self._stamp = stamp  # a bad file is reported once, not at every look
            try:
                keys += read_keys_file(self._path)
            except (OSError, UnicodeDecodeError, ConfigError) as exc:
                if startup:
                    raise ConfigError(f"AUTH_KEYS_FILE: {exc}") from None
                log.error("keys file not reloaded, the keys in use stay: %s", exc)
                return
        if not startup:
            log.info("keys reloaded: %s", ", ".join(k.name for k in keys) or "none")
        self._keys = keys
        self._limits = {k.name: k.limits for k in keys if k.limits}

    async def _watch(self) -> None:
        assert self._path is not None
        while True:
            await asyncio.sleep(_POLL_SECONDS)
            try:
                changed = _stamp(self._path) != self._stamp
            except OSError:
                changed = self._stamp is not None
            if changed:
                self.reload()


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino
