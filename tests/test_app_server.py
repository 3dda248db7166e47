"""Where the app listens: 127.0.0.1 whatever folder ``streamlit run`` starts in."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

from app.server import (
    _decode,
    exposure_problem,
    is_loopback,
    listening_addresses,
    running_app,
)

MAIN = Path(__file__).resolve().parent.parent / "app" / "main.py"


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


@pytest.mark.slow
def test_streamlit_started_from_another_folder_listens_on_localhost_only(tmp_path: Path) -> None:
    if not Path("/proc/self/net/tcp").exists():
        pytest.skip("needs Linux /proc")
    env = {key: value for key, value in os.environ.items() if not key.startswith("STREAMLIT_")} | {
        "DML_EXPLORER_UMAP": "off",
        "HOME": str(tmp_path),
    }  # no ~/.streamlit/config.toml
    # No --server.address: only app/.streamlit/config.toml can keep it on 127.0.0.1.
    with running_app(MAIN, cwd=tmp_path, env=env, options={}, log=tmp_path / "log") as app:
        addresses = listening_addresses(app.process.pid)
        assert {port for _, port in addresses} == {app.port}
        assert [address for address, _ in addresses] == ["127.0.0.1"], addresses
