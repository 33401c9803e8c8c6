"""The upstream HTTP client against real local servers: what real networks and servers do.

Each server here is a few lines of asyncio that writes exactly the bytes under test: encoded
bodies, bodies ended by a close, chunks split at odd places, interim answers, IPv6, TLS with a
CA made for the test, a CONNECT proxy, connection caps, and connections that die under a
request (which is resent only when the server cannot have read it).
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import zlib

import pytest
import trustme

from spaceai.providers.transport import Transport

BODY = b'{"id":"x","choices":[{"message":{"content":"' + b"hello " * 200 + b'"}}]}'


class Server:
    """A raw HTTP/1.1 server on loopback: ``answer(request, writer, nth)`` writes the bytes
    of each request's answer (``nth`` counts the requests of one connection, from 0)."""

    def __init__(self, answer, host: str = "127.0.0.1", ssl_ctx=None) -> None:
        self.answer = answer
        self.host = host
        self.ssl = ssl_ctx
        self.requests: list[bytes] = []
        self.accepted = 0
        self.open = 0
        self.most_open = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Server:
        self.server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.ssl else 'http'}://{host}:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.add(writer)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            nth = 0
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if await self.answer(request, writer, nth) is False:
                    return
                nth += 1
        finally:
            self.open -= 1
            writer.close()

    async def stop(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        await asyncio.sleep(0.01)


def fixed(body: bytes, *headers: str, status: str = "200 OK"):
    async def answer(request, writer, nth):
        head = "".join(f"{h}\r\n" for h in headers)
        writer.write(f"HTTP/1.1 {status}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        await writer.drain()
    return answer


@pytest.fixture
async def transport():
    t = Transport(trust_env=False)
    yield t
    t.close()


async def post(t: Transport, url: str, body: bytes = b"{}", **kw) -> tuple[int, dict, bytes]:
    loop = asyncio.get_running_loop()
    resp = await t.request(url, "POST", "/chat/completions", (("Content-Type", "application/json"),),
                           body, connect_timeout=5, deadline=loop.time() + 10, **kw)
    data = await resp.read(loop.time() + 10)
    resp.release()
    return resp.status, resp.headers, data


async def stream(t: Transport, url: str) -> list[bytes]:
    loop = asyncio.get_running_loop()
    resp = await t.request(url, "POST", "/chat/completions", (), b"{}", connect_timeout=5,
                           deadline=loop.time() + 10)
    parts = []
    while data := await resp.receive(loop.time() + 10):
        parts.append(data)
    resp.release()
    return parts


# -- bodies ----------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding,encode", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),  # zlib-wrapped, as the RFC says
    ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send
])
async def test_compressed_body_is_decoded(transport, encoding, encode):
    up = await Server(fixed(encode(BODY), f"Content-Encoding: {encoding}")).start()
    try:
        status, _, body = await post(transport, up.url)
        assert status == 200 and body == BODY
        assert b"accept-encoding: identity" in up.requests[0].lower()
    finally:
        await up.stop()


async def test_gzip_stream_split_at_odd_places_is_decoded_as_it_arrives(transport):
    events = b"".join(b'data: {"n":%d}\n\n' % i for i in range(50)) + b"data: [DONE]\n\n"
    packed = gzip.compress(events)

    async def answer(request, writer, nth):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(packed), 7):
            piece = packed[i:i + 7]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
    up = await Server(answer).start()
    try:
        assert b"".join(await stream(transport, up.url)) == events
    finally:
        await up.stop()


async def test_body_ended_by_the_close_of_the_connection(transport):
    async def answer(request, writer, nth):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + BODY[:100])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(BODY[100:])
        return False  # close: that ends the body
    up = await Server(answer).start()
    try:
        status, _, body = await post(transport, up.url)
        assert status == 200 and body == BODY
        assert transport.stats()[up.url][1] == 0  # not kept: it is closed
    finally:
        await up.stop()


async def test_chunked_body_split_byte_by_byte(transport):
    async def answer(request, writer, nth):
        raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (BODY[:13], BODY[13:500],
                                                                  BODY[500:]))
               + b"0\r\n\r\n")
        for i in range(len(raw)):  # one byte per write: every boundary falls somewhere odd
            writer.write(raw[i:i + 1])
            if i % 97 == 0:
                await writer.drain()
                await asyncio.sleep(0)
    up = await Server(answer).start()
    try:
        for _ in range(2):  # and the connection is reused after it
            assert await post(transport, up.url) == (200, {"transfer-encoding": "chunked"}, BODY)
        assert up.accepted == 1
    finally:
        await up.stop()


async def test_interim_1xx_answers_are_skipped(transport):
    async def answer(request, writer, nth):
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n"
                     b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(BODY), BODY))
    up = await Server(answer).start()
    try:
        status, headers, body = await post(transport, up.url)
        assert (status, headers.get("x-final"), body) == (200, "yes", BODY)
        assert "link" not in headers
        assert (await post(transport, up.url))[0] == 200  # the connection is in step
    finally:
        await up.stop()


# -- where the request goes ------------------------------------------------------------------

def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_literal_base_url_sends_a_bracketed_host(transport):
    up = await Server(fixed(BODY), host="::1").start()
    try:
        assert (await post(transport, up.url))[2] == BODY
        assert f"Host: [::1]:{up.port}\r\n".encode() in up.requests[0]
    finally:
        await up.stop()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def tls_server_context(ca) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


async def test_tls_with_a_configured_ca_bundle_and_sni(ca, tmp_path):
    seen_sni = []
    ctx = tls_server_context(ca)
    ctx.sni_callback = lambda sock, name, _: seen_sni.append(name)
    up = await Server(fixed(BODY), ssl_ctx=ctx).start()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    url = f"https://localhost:{up.port}/v1"
    try:
        untrusting = Transport(trust_env=False)
        with pytest.raises(ssl.SSLCertVerificationError):  # the system CAs do not know it
            await post(untrusting, url)
        untrusting.close()
        for t, kw in ((Transport(trust_env=False, ca_bundle=str(bundle)), {}),  # the gateway's
                      (Transport(trust_env=False), {"ca_bundle": str(bundle)})):  # a model's
            status, _, body = await post(t, url, **kw)
            assert (status, body) == (200, BODY)
            t.close()
        assert seen_sni[-1] == "localhost"
    finally:
        await up.stop()


async def test_ca_bundle_comes_from_the_environment(ca, tmp_path, monkeypatch):
    up = await Server(fixed(BODY), ssl_ctx=tls_server_context(ca)).start()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SPACEAI_CA_BUNDLE", str(bundle))
    t = Transport(trust_env=False)
    try:
        assert (await post(t, f"https://localhost:{up.port}/v1"))[2] == BODY
    finally:
        t.close()
        await up.stop()


class ConnectProxy:
    """An HTTP proxy: ``CONNECT host:port`` opens a tunnel; an absolute-URL request is answered
    by the proxy itself (it records what it saw)."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    async def start(self) -> ConnectProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://user:pa%40ss@127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def _serve(self, reader, writer) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.seen.append(head)
        method, target, _ = head.split(b"\r\n")[0].split(b" ")
        if method != b"CONNECT":
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nproxied")
            await writer.drain()
            writer.close()
            return
        host, _, port = target.rpartition(b":")
        up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src, dst) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def stop(self) -> None:
        self.server.close()


async def test_https_upstream_through_a_connect_proxy(ca, tmp_path, monkeypatch):
    up = await Server(fixed(BODY), ssl_ctx=tls_server_context(ca)).start()
    proxy = await ConnectProxy().start()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    t = Transport(ca_bundle=str(bundle))
    try:
        for _ in range(2):  # the tunnel is kept alive and reused
            assert (await post(t, f"https://localhost:{up.port}/v1"))[2] == BODY
        assert len(proxy.seen) == 1 and up.accepted == 1
        assert proxy.seen[0].startswith(f"CONNECT localhost:{up.port} HTTP/1.1\r\n".encode())
        assert b"Proxy-Authorization: Basic dXNlcjpwYUBzcw==" in proxy.seen[0]  # user:pa@ss
        assert b"Host: localhost" in up.requests[0]
    finally:
        t.close()
        await proxy.stop()
        await up.stop()


async def test_http_upstream_through_a_proxy_sends_the_absolute_url(monkeypatch):
    proxy = await ConnectProxy().start()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    t = Transport()
    try:
        assert (await post(t, "http://upstream.example:8080/v1"))[2] == b"proxied"
        assert proxy.seen[0].startswith(
            b"POST http://upstream.example:8080/v1/chat/completions HTTP/1.1\r\n")
    finally:
        t.close()
        await proxy.stop()


async def test_no_proxy_hosts_are_reached_directly(monkeypatch):
    up = await Server(fixed(BODY)).start()
    proxy = await ConnectProxy().start()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    t = Transport()
    try:
        assert (await post(t, up.url))[2] == BODY
        assert proxy.seen == []
    finally:
        t.close()
        await proxy.stop()
        await up.stop()


# -- pools -----------------------------------------------------------------------------------

async def test_connections_per_origin_are_capped_and_requests_wait_for_one():
    async def answer(request, writer, nth):
        await asyncio.sleep(0.1)
        await fixed(BODY)(request, writer, nth)
    up = await Server(answer).start()
    t = Transport(trust_env=False, max_per_origin=2)
    try:
        results = await asyncio.gather(*[post(t, up.url) for _ in range(8)])
        assert all(r[2] == BODY for r in results)
        assert up.most_open == 2 and up.accepted == 2
    finally:
        t.close()
        await up.stop()


async def test_a_request_waiting_at_the_cap_keeps_its_deadline():
    async def answer(request, writer, nth):
        await asyncio.sleep(1)
        await fixed(BODY)(request, writer, nth)
    up = await Server(answer).start()
    t = Transport(trust_env=False, max_per_origin=1)
    loop = asyncio.get_running_loop()
    try:
        first = asyncio.ensure_future(post(t, up.url))
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):
            await t.request(up.url, "POST", "/x", (), b"{}", connect_timeout=5,
                            deadline=loop.time() + 0.2)
        assert (await first)[2] == BODY
    finally:
        t.close()
        await up.stop()


# -- resending -------------------------------------------------------------------------------

async def test_reused_connection_closed_without_a_byte_is_resent_once(transport):
    async def answer(request, writer, nth):
        if nth == 1:
            return False  # the keep-alive race: read, closed, not a byte back
        await fixed(BODY)(request, writer, nth)
    up = await Server(answer).start()
    try:
        assert (await post(transport, up.url))[2] == BODY
        assert (await post(transport, up.url))[2] == BODY  # resent on a fresh connection
        assert len(up.requests) == 3 and up.accepted == 2
    finally:
        await up.stop()


async def test_request_the_server_began_answering_is_never_resent(transport):
    async def answer(request, writer, nth):
        if nth == 1:
            writer.write(b"HTTP/1.1 2")  # it began answering: it may have acted on it
            await writer.drain()
            return False
        await fixed(BODY)(request, writer, nth)
    up = await Server(answer).start()
    try:
        await post(transport, up.url)
        with pytest.raises(ConnectionError):
            await post(transport, up.url)
        assert len(up.requests) == 2  # the billable POST was sent once
    finally:
        await up.stop()


async def test_request_the_server_held_before_closing_is_never_resent():
    async def answer(request, writer, nth):
        if nth == 1:
            await asyncio.sleep(0.5)  # it read the request and worked on it, then died
            return False
        await fixed(BODY)(request, writer, nth)
    up = await Server(answer).start()
    t = Transport(trust_env=False, resend_window_s=0.2)
    try:
        await post(t, up.url)
        with pytest.raises(ConnectionError):
            await post(t, up.url)
        assert len(up.requests) == 2
    finally:
        t.close()
        await up.stop()


async def test_request_on_a_fresh_connection_is_never_resent(transport):
    async def answer(request, writer, nth):
        return False
    up = await Server(answer).start()
    try:
        with pytest.raises(ConnectionError):
            await post(transport, up.url)
        assert len(up.requests) == 1
    finally:
        await up.stop()


async def test_a_request_is_resent_at_most_once(transport):
    async def answer(request, writer, nth):
        if nth >= 1:
            return False
        await fixed(BODY)(request, writer, nth)
    up = await Server(answer).start()
    try:
        await asyncio.gather(*[post(transport, up.url) for _ in range(3)])  # 3 pooled
        with pytest.raises(ConnectionError):
            await post(transport, up.url)  # pooled: closed; resent on another pooled: closed
        assert len(up.requests) == 5
    finally:
        await up.stop()


# -- through the providers -------------------------------------------------------------------

async def test_a_models_ca_bundle_reaches_the_transport(ca, tmp_path):
    from spaceai.catalog import Catalog
    from spaceai.providers.http import HttpClient

    up = await Server(fixed(BODY), ssl_ctx=tls_server_context(ca)).start()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    model = Catalog.from_dicts([{"id": "m", "provider": "openai", "api_key": "k",
                                 "base_url": f"https://localhost:{up.port}/v1",
                                 "ca_bundle": str(bundle)}]).get("m")
    http = HttpClient()
    try:
        loop = asyncio.get_running_loop()
        resp = await http.send(model, "/chat/completions", (), b"{}", loop.time() + 10)
        assert await http.read(resp, model, loop.time() + 10) == BODY
        resp.release()
    finally:
        await http.close()
        await up.stop()


async def test_every_provider_maps_a_connection_failure_the_same_way():
    from fakes.upstream import unused_port

    from spaceai.catalog import Catalog
    from spaceai.providers.anthropic import AnthropicProvider
    from spaceai.providers.http import HttpClient
    from spaceai.providers.openai import OpenAIProvider
    from spaceai.types import ChatRequest, UpstreamError

    url = f"http://127.0.0.1:{unused_port()}/v1"
    catalog = Catalog.from_dicts([
        {"id": "o", "provider": "openai", "api_key": "k", "base_url": url},
        {"id": "a", "provider": "anthropic", "api_key": "k", "base_url": url}])
    http = HttpClient()
    req = ChatRequest(model="x", messages=[{"role": "user", "content": "hi"}])
    errors = []
    try:
        for provider, model in ((OpenAIProvider(http), "o"), (AnthropicProvider(http), "a")):
            with pytest.raises(UpstreamError) as exc:
                await provider.chat(req, catalog.get(model))
            errors.append(exc.value)
    finally:
        await http.close()
    assert [(e.status, e.code, e.retryable) for e in errors] == [
        (502, "upstream_unreachable", True)] * 2
