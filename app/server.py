"""Where the app listens: on 127.0.0.1 only, unless someone deliberately says otherwise.

Anyone who can reach the app can start training runs, so it must not listen on every interface
by accident. ``app/.streamlit/config.toml`` sets ``server.address = "127.0.0.1"``; Streamlit
(1.46 and later) reads a ``.streamlit/config.toml`` beside the main script whatever the current
folder, so ``cd /tmp && streamlit run /path/to/app/main.py`` listens on 127.0.0.1 too. To expose
the app on purpose, name the address: ``streamlit run app/main.py --server.address 0.0.0.0`` (or
``STREAMLIT_SERVER_ADDRESS=0.0.0.0``). As a second line of defence, ``app/main.py`` refuses to
serve pages when the server process listens on a non-loopback address that nobody configured
(a Streamlit that skipped the file): :func:`exposure_problem`.

:func:`running_app` starts ``streamlit run`` on a free port and waits for it: the one launcher the
browser tests, ``tests/test_app_server.py`` and ``bench/app_bench.py`` share.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LISTEN_STATE = "0A"
"""``st`` column of /proc/net/tcp for a listening socket."""


def _decode(hex_address: str) -> tuple[str, int]:
    """``("127.0.0.1", 8501)`` from /proc/net/tcp's ``0100007F:2135`` (IPv6: 32 hex digits in
    four little-endian 32-bit words)."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words)), int(port, 16)


def listening_addresses(pid: int | str = "self") -> list[tuple[str, int]]:
    """``(address, port)`` of every TCP socket process ``pid`` listens on ([] without /proc)."""
    proc = Path(f"/proc/{pid}")
    try:
        descriptors = list((proc / "fd").iterdir())
    except OSError:
        return []
    inodes = set()
    for descriptor in descriptors:
        try:
            link = os.readlink(descriptor)
        except OSError:  # closed meanwhile (e.g. the listing's own descriptor)
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    found = []
    for table in ("tcp", "tcp6"):
        try:
            rows = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == LISTEN_STATE and fields[9] in inodes:
                found.append(_decode(fields[1]))
    return found


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 and ::ffff:127.x.x.x (an IPv4 loopback address seen from IPv6)."""
    parsed = ipaddress.ip_address(address)
    mapped = getattr(parsed, "ipv4_mapped", None)
    return parsed.is_loopback or (mapped is not None and mapped.is_loopback)


def exposure_problem(listening: list[tuple[str, int]], configured: str | None) -> str | None:
    """Why the app must not serve, or None.

    ``listening``: the server's sockets (:func:`listening_addresses`); ``configured``: the
    ``server.address`` option. Listening beyond loopback is accepted only when an address was
    configured on purpose.
    """
    exposed = sorted(
        {f"{address}:{port}" for address, port in listening if not is_loopback(address)}
    )
    if not exposed or (configured or "").strip():
        return None
    return (
        f"The app listens on {', '.join(exposed)}, reachable from other machines, although no "
        "address was configured (app/.streamlit/config.toml was not read: Streamlit older than "
        "1.46?). Refusing to serve. Start it with `make app` or "
        "`streamlit run app/main.py --server.address 127.0.0.1`; to expose it deliberately, "
        "pass --server.address 0.0.0.0."
    )


@functools.cache
def own_exposure_problem(configured: str | None) -> str | None:
    """:func:`exposure_problem` for this process (the sockets are read once)."""
    return exposure_problem(listening_addresses(), configured)


# --- starting the app from Python (the browser tests, tests/test_app_server.py, bench/) -----------

HEADLESS_OPTIONS = {
    "server.headless": "true",
    "server.address": "127.0.0.1",
    "browser.gatherUsageStats": "false",
}
"""``streamlit run`` options for a server nobody opens a browser window on."""


@dataclass(frozen=True)
class RunningApp:
    """A ``streamlit run`` started by :func:`running_app`: its URL, port and process."""

    url: str
    port: int
    process: subprocess.Popen


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Return once ``url``'s ``/_stcore/health`` answers ``ok``; raise if ``process`` exits or
    ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"streamlit did not answer at {url} within {timeout:.0f} s")


@contextmanager
def running_app(
    main: str | Path = "app/main.py",
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    options: Mapping[str, str] = HEADLESS_OPTIONS,
    log: str | Path | None = None,
    timeout: float = 90,
    stop_grace: float = 15,
) -> Iterator[RunningApp]:
    """``python -m streamlit run MAIN --server.port P --<option> <value>…`` on a free port ``P``,
    in ``cwd`` (default: the checkout holding this file) with environment ``env`` (default: this
    process's); yields once the server answers its health check, stops it on the way out (SIGTERM,
    then SIGKILL after ``stop_grace`` seconds: Python's own shutdown after Streamlit has stopped,
    a garbage collection of everything the app imported, takes 8-11 s on a loaded 2-core machine).
    Its output goes to ``log`` (default: discarded)."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(main), "--server.port", str(port)]
    for name, value in options.items():
        command += [f"--{name}", value]
    with open(log or os.devnull, "wb") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd or Path(__file__).resolve().parent.parent,
            env=dict(os.environ if env is None else env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, timeout)
        yield RunningApp(url, port, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=stop_grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
