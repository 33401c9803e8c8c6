"""Connection hygiene on both sides of the gateway, with real sockets on loopback.

Clients: an idle keep-alive connection is closed after ``keep_alive_s``; one that never
finishes its headers (slowloris) or its body is answered 408 and closed; past
``max_connections`` a request gets a JSON 503. Upstreams: after a burst, a pool keeps at
most ``max_idle`` connections per origin and closes those idle for longer than ``idle_s``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from conftest import openai_model
from fakes.scripted import (
    ScriptedUpstream,
    delayed_json,
    openai_completion,
    openai_events,
    stream,
)
from support.server import GatewayServer

from spaceai.providers.transport import Transport

MODEL = {"id": "m", "provider": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}
LIVE = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    up = ScriptedUpstream().start_in_thread()
    settings = {"keep_alive_s": 0.5, "header_timeout_s": 1.0, "body_timeout_s": 1.0,
                "send_timeout_s": 1.0, "max_connections": 8}
    models = [MODEL, openai_model(up, "big")]
    with GatewayServer(tmp_path_factory.mktemp("conns"), models=models,
                       settings=settings) as s:
        s.up = up
        yield s
    up.stop_thread()


def eventually(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


async def until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def open_connections(gw) -> int:
    return len(gw._server.server_state.connections)


def connect(gw) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    sock.settimeout(10)
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of one response with a content-length."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"closed before a response: {data!r}"
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    lengths = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
               if line.lower().startswith(b"content-length:")]
    if lengths:
        while len(body) < lengths[0]:
            body += sock.recv(65536)
        return status, body
    while not body.endswith(b"0\r\n\r\n"):  # chunked
        body += sock.recv(65536)
    out = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        if int(size, 16) == 0:
            return status, out
        out, body = out + rest[:int(size, 16)], rest[int(size, 16) + 2:]


def closed_after(sock: socket.socket) -> float:
    """Seconds until the server closes ``sock`` (reading and dropping what it sends)."""
    t = time.monotonic()
    while True:
        try:
            if not sock.recv(65536):
                return time.monotonic() - t
        except ConnectionResetError:
            return time.monotonic() - t


def test_idle_keep_alive_connection_is_closed(gw):
    with connect(gw) as sock:
        sock.sendall(LIVE)
        assert read_response(sock)[0] == 200
        assert closed_after(sock) < 3  # keep_alive_s 0.5 (uvicorn's default: 5)


def test_connection_that_never_sends_a_request_is_closed(gw):
    with connect(gw) as sock:
        assert closed_after(sock) < 4  # header_timeout_s 1


def test_slowloris_headers_are_cut_by_the_header_timeout(gw):
    with connect(gw) as sock:
        t = time.monotonic()
        sock.sendall(b"GET /health/live HTTP/1.1\r\n")
        answer = b""
        try:
            for byte in b"X-Slow: " + b"a" * 100:  # one byte every 0.1 s: 10 s in all
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(3)
        try:
            while more := sock.recv(65536):
                answer += more
        except ConnectionResetError:
            pass
        assert time.monotonic() - t < 4  # header_timeout_s 1; the client sends for 10 s
        assert answer.startswith(b"HTTP/1.1 408")
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"


def test_slow_body_is_cut_by_the_body_timeout(gw):
    key = gw.create_key().encode()
    with connect(gw) as sock:
        t = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + key + b"\r\nContent-Length: 100\r\n\r\n")
        try:
            for _ in range(30):  # one byte every 0.1 s: 10 s for the 100 bytes
                sock.sendall(b"{")
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, body = read_response(sock)
        assert status == 408 and time.monotonic() - t < 4
        assert closed_after(sock) < 1


def test_connections_past_the_cap_get_a_json_503(gw):
    idle = [connect(gw) for _ in range(8)]  # the cap: 8 open connections
    try:
        eventually(lambda: open_connections(gw) >= 8)
        with connect(gw) as sock:
            sock.sendall(LIVE)
            status, body = read_response(sock)
            assert status == 503
            assert json.loads(body)["error"]["code"] == "too_many_connections"
            assert closed_after(sock) < 1
    finally:
        for s in idle:
            s.close()
    eventually(lambda: open_connections(gw) == 0)
    with connect(gw) as sock:
        sock.sendall(LIVE)
        assert read_response(sock)[0] == 200


def test_client_that_reads_nothing_is_disconnected_and_its_upstream_closed(gw):
    big = openai_events(*["x" * 65536] * 300)  # 20 MB: more than the sockets buffer
    gw.up.script(stream(big))
    body = json.dumps({"model": "big", "stream": True, "messages": [
        {"role": "user", "content": "hi"}]}).encode()
    with connect(gw) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: "
                     b"Bearer " + gw.create_key().encode() + b"\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        head = sock.recv(2048)
        rid = head.split(b"x-request-id: ")[1].split(b"\r\n")[0].decode()
        deadline = time.monotonic() + 10  # send_timeout_s 1: never read, closed soon after
        while gw.up.open and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gw.up.open == 0, "the upstream stream still feeds a client that reads nothing"
    gw.flush_ledger()
    rows = [r for r in gw.usage_rows(limit=100)["data"] if r["request_id"] == rid]
    assert rows and rows[0]["status"] == "client_disconnected"


async def test_upstream_pool_keeps_at_most_max_idle_and_expires_them():
    up = await ScriptedUpstream().script(delayed_json(openai_completion(), 0.2)).start()
    transport = Transport(max_idle=8, idle_s=0.6)
    url = up.base_url

    async def call() -> None:
        loop = asyncio.get_running_loop()
        resp = await transport.request(url, "POST", "/chat/completions", (), b"{}",
                                       connect_timeout=5, deadline=loop.time() + 5)
        assert resp.status == 200 and await resp.read(loop.time() + 5)
        resp.release()

    try:
        await asyncio.gather(*[call() for _ in range(50)])  # 50 at once: 50 connections
        assert up.accepted == 50
        await until(lambda: up.open == 8)
        assert transport.stats()[url] == (8, 8)
        await call()  # a fresh idle one is reused
        assert up.accepted == 50
        await asyncio.sleep(0.6)  # idle_s 0.6: the sweep (every 0.3 s) closes them
        await until(lambda: up.open == 0)
        assert transport.stats()[url] == (0, 0)
        await call()
        assert up.accepted == 51
    finally:
        transport.close()
        await up.stop()


def test_connection_settings_come_from_the_environment_then_the_yaml(tmp_path, monkeypatch):
    from spaceai.api.connections import server_options
    from spaceai.config import Settings

    path = tmp_path / "config.yaml"
    path.write_text("settings: {keep_alive_s: 3, header_timeout_s: 4, max_connections: 100,\n"
                    "           upstream_max_idle: 16, upstream_idle_s: 45}\n"
                    "models: [{id: m, provider: local}]\n")
    monkeypatch.setenv("SPACEAI_HEADER_TIMEOUT_S", "2.5")
    monkeypatch.setenv("SPACEAI_BODY_TIMEOUT_S", "20")
    s = Settings.load(str(path))
    assert (s.keep_alive_s, s.header_timeout_s, s.body_timeout_s, s.max_connections) == (
        3, 2.5, 20, 100)
    assert (s.upstream_max_idle, s.upstream_idle_s) == (16, 45)
    options = server_options(s)
    assert options["timeout_keep_alive"] == 3 and options["limit_concurrency"] is None
    limits = options["http"].keywords["limits"]
    assert (limits.header_timeout_s, limits.body_timeout_s, limits.max_connections) == (
        2.5, 20, 100)
    monkeypatch.delenv("SPACEAI_HEADER_TIMEOUT_S")
    assert 16 <= Settings().connection_cap() <= 10000  # default: from the open-file limit
