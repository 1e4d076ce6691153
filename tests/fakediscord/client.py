"""An independent Discord client for the fake's own tests (aiohttp client + a raw socket
websocket reader), so that a bug in the fake is not hidden by the bot's code."""

import asyncio
import base64
import json
import os
import socket
import ssl
import struct
import zlib

import aiohttp

UA = "DiscordBot (https://example.invalid/fake-tests, 0.1)"


def ssl_ctx(fake):
    if not fake.ca_file:
        return None
    return ssl.create_default_context(cafile=fake.ca_file)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class Rest:
    """REST calls against the fake with correct headers unless told otherwise."""

    def __init__(self, fake, session):
        self.fake = fake
        self.s = session

    def headers(self, auth=True, ua=UA, extra=None):
        h = {}
        if auth:
            h["Authorization"] = "Bot " + self.fake.token if auth is True else auth
        if ua:
            h["User-Agent"] = ua
        h.update(extra or {})
        return h

    async def req(self, method, path, json_body=None, data=None, auth=True, ua=UA, headers=None):
        async with self.s.request(method, self.fake.api_url + path, json=json_body, data=data,
                                  headers=self.headers(auth, ua, headers),
                                  ssl=ssl_ctx(self.fake)) as r:
            raw = await r.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            return r.status, body, r.headers

    def post_message(self, channel_id, body, **kw):
        return self.req("POST", "/channels/%s/messages" % channel_id, body, **kw)


async def rest_session(fake):
    return aiohttp.ClientSession()


class Gateway:
    """One gateway connection with zlib-stream inflation and JSON decoding."""

    def __init__(self, fake, session, url=None, compress=False, query=None):
        self.fake = fake
        self.s = session
        q = query if query is not None else "v=10&encoding=json" + ("&compress=zlib-stream" if compress else "")
        self.url = (url or fake.gateway_url) + "/?" + q
        self.compress = compress
        self.z = zlib.decompressobj()
        self.ws = None
        self.seq = None
        self.received = []

    async def connect(self):
        self.ws = await self.s.ws_connect(self.url, ssl=ssl_ctx(self.fake), autoping=True,
                                          max_msg_size=1 << 26)
        return self

    async def recv(self, timeout=5.0):
        """Next payload as a dict, or ("close", code) when the server closed."""
        msg = await self.ws.receive(timeout=timeout)
        if msg.type == aiohttp.WSMsgType.BINARY:
            assert self.compress, "binary message on an uncompressed connection"
            assert msg.data.endswith(b"\x00\x00\xff\xff"), "zlib message without sync flush suffix"
            p = json.loads(self.z.decompress(msg.data))
        elif msg.type == aiohttp.WSMsgType.TEXT:
            p = json.loads(msg.data)
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return ("close", self.ws.close_code)
        elif msg.type == aiohttp.WSMsgType.ERROR:
            return ("error", None)
        else:
            raise AssertionError("unexpected message %r" % (msg,))
        if p.get("s") is not None:
            self.seq = p["s"]
        self.received.append(p)
        return p

    async def recv_until(self, pred, timeout=5.0):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            p = await self.recv(max(0.01, deadline - loop.time()))
            if isinstance(p, tuple) or pred(p):
                return p

    async def expect_close(self, timeout=5.0):
        p = await self.recv_until(lambda p: False, timeout)
        assert isinstance(p, tuple), p
        return p[1]

    async def send(self, obj):
        await self.ws.send_str(json.dumps(obj))

    async def hello(self):
        p = await self.recv()
        assert p["op"] == 10, p
        return p

    async def identify(self, token=None, intents=(1 << 0) | (1 << 9) | (1 << 12) | (1 << 15), **extra):
        d = {"token": token or self.fake.token, "intents": intents,
             "properties": {"os": "linux", "browser": "fake-tests", "device": "fake-tests"}}
        d.update(extra)
        await self.send({"op": 2, "d": d})

    async def ready(self, **kw):
        """Hello, Identify, READY; returns the READY payload."""
        await self.hello()
        await self.identify(**kw)
        p = await self.recv_until(lambda p: p.get("t") == "READY")
        assert not isinstance(p, tuple), "closed %r instead of READY" % (p,)
        return p

    async def heartbeat(self):
        await self.send({"op": 1, "d": self.seq})

    async def close(self, code=1000):
        if self.ws is not None and not self.ws.closed:
            await self.ws.close(code=code)


async def open_gateway(fake, session, **kw):
    return await Gateway(fake, session, **kw).connect()


class RawWebSocket:
    """A minimal blocking websocket client that exposes every frame (opcode, FIN, payload)."""

    def __init__(self, fake, url, query):
        host_port = url.split("://", 1)[1]
        host, port = host_port.split(":")
        sock = socket.create_connection((host, int(port)), timeout=5)
        if url.startswith("wss"):
            sock = ssl_ctx(fake).wrap_socket(sock, server_hostname=host)
        self.sock = sock
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(("GET /?%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                      % (query, host_port, key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = sock.recv(4096)
            assert chunk, "connection closed during handshake"
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        b0, b1 = self._need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        assert not b1 & 0x80, "server frames must not be masked"
        return {"fin": bool(b0 & 0x80), "rsv": b0 & 0x70, "opcode": b0 & 0x0F, "payload": self._need(n)}

    def send_text(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(header + mask + masked)

    def close(self):
        self.sock.close()
