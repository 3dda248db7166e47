"""Where the app listens: 127.0.0.1 whatever folder ``streamlit run`` starts in."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app.server import _decode, exposure_problem, is_loopback, listening_addresses

MAIN = Path(__file__).resolve().parent.parent / "app" / "main.py"
START_TIMEOUT = 90


def test_proc_net_addresses_decode() -> None:
    assert _decode("0100007F:1F90") == ("127.0.0.1", 8080)
    assert _decode("00000000:0050") == ("0.0.0.0", 80)
    assert _decode("00000000000000000000000001000000:1F90") == ("::1", 8080)
    mapped = _decode("0000000000000000FFFF00000100007F:0016")
    assert mapped == (str(ipaddress.ip_address("::ffff:127.0.0.1")), 22)


def test_only_an_unconfigured_exposed_address_is_refused() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::")
    assert exposure_problem([("127.0.0.1", 8501)], None) is None
    assert exposure_problem([], None) is None
    problem = exposure_problem([("0.0.0.0", 8501), ("::", 8501)], None)
    assert problem is not None and "0.0.0.0:8501" in problem and "--server.address" in problem
    assert exposure_problem([("0.0.0.0", 8501)], "0.0.0.0") is None  # deliberately exposed


def test_listening_addresses_finds_this_processes_socket() -> None:
    if not Path("/proc/self/net/tcp").exists():
        pytest.skip("needs Linux /proc")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert ("127.0.0.1", port) not in listening_addresses()
        server.listen()
        assert ("127.0.0.1", port) in listening_addresses()
        assert ("127.0.0.1", port) in listening_addresses(os.getpid())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_streamlit_started_from_another_folder_listens_on_localhost_only(tmp_path: Path) -> None:
    if not Path("/proc/self/net/tcp").exists():
        pytest.skip("needs Linux /proc")
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("STREAMLIT_")} | {
        "DML_EXPLORER_UMAP": "off",
        "HOME": str(tmp_path),
    }  # no ~/.streamlit/config.toml
    command = [sys.executable, "-m", "streamlit", "run", str(MAIN), "--server.port", str(port)]
    log = tmp_path / "streamlit.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not listening_addresses(server.pid):
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "streamlit did not start listening"
            time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
            assert r.read().strip() == b"ok"
        addresses = listening_addresses(server.pid)
        assert {port for _, port in addresses} == {port}
        assert [address for address, _ in addresses] == ["127.0.0.1"], addresses
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
