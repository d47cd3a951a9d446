"""The sandbox's tcp-echo servers: Istio's sample protocol, counters, refusing and accepting again."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from canary_sandbox.tcpecho import V1_PREFIX, V2_PREFIX, TcpEchoServer, ask


@pytest.fixture
def v1() -> Iterator[TcpEchoServer]:
    with TcpEchoServer(V1_PREFIX) as server:
        yield server


def _read_lines(sock: socket.socket, count: int) -> list[str]:
    received = b""
    while received.count(b"\n") < count:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received.decode().splitlines()


def test_answers_every_line_with_its_prefix_on_the_same_connection(v1: TcpEchoServer) -> None:
    with socket.create_connection(v1.address, timeout=2) as sock:
        sock.sendall(b"hello\nworld\n")
        assert _read_lines(sock, 2) == ["one hello", "one world"]
        sock.sendall(b"again\n")
        assert _read_lines(sock, 1) == ["one again"]
    assert v1.accepted == 1
    assert v1.replies == 3


def test_the_v2_server_answers_with_two() -> None:
    with TcpEchoServer(V2_PREFIX) as v2:
        assert ask(v2.address, "hi") == "two hi"


def test_a_line_cut_short_by_the_clients_close_gets_no_answer(v1: TcpEchoServer) -> None:
    with socket.create_connection(v1.address, timeout=2) as sock:
        sock.sendall(b"done\npartial")
        sock.shutdown(socket.SHUT_WR)
        assert _read_lines(sock, 2) == ["one done"]
        assert sock.recv(10) == b""  # the server closed after the client did
    assert v1.replies == 1


def test_refuse_makes_connects_fail_on_the_same_port_and_accept_again_restores_it(v1: TcpEchoServer) -> None:
    port = v1.port
    with socket.create_connection(v1.address, timeout=2) as held:
        held.sendall(b"before\n")
        assert _read_lines(held, 1) == ["one before"]
        v1.refuse()
        assert v1.refusing
        with pytest.raises(ConnectionRefusedError):
            ask(v1.address, "refused?")
        held.sendall(b"still here\n")  # connections open before the fault carry on
        assert _read_lines(held, 1) == ["one still here"]
        v1.refuse()  # idempotent
    v1.accept_again()
    assert not v1.refusing
    assert v1.port == port
    assert ask(v1.address, "back") == "one back"
    assert v1.accepted == 2


def test_serves_hundreds_of_concurrent_short_connections(v1: TcpEchoServer) -> None:
    lines = [f"line-{i}" for i in range(300)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        replies = list(pool.map(lambda line: ask(v1.address, line), lines))
    assert replies == [f"one {line}" for line in lines]
    assert v1.accepted == 300


def test_stop_closes_open_connections_and_is_idempotent() -> None:
    server = TcpEchoServer(V1_PREFIX).start()
    address = server.address
    with socket.create_connection(address, timeout=2) as sock:
        sock.sendall(b"x\n")
        assert _read_lines(sock, 1) == ["one x"]
        server.stop()
        assert sock.recv(10) == b""
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        ask(address, "gone")


def test_a_fixed_port_is_used_and_a_running_server_cannot_start_twice(v1: TcpEchoServer) -> None:
    with TcpEchoServer(V2_PREFIX, port=0) as probe:
        free = probe.port
    with TcpEchoServer(V2_PREFIX, port=free) as fixed:
        assert fixed.port == free
        assert ask(fixed.address, "x") == "two x"
        with pytest.raises(RuntimeError, match="already running"):
            fixed.start()


def test_the_port_of_a_server_never_started_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = TcpEchoServer(V1_PREFIX).port
