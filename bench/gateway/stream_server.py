#!/usr/bin/python3
"""A minimal gateway that streams N MESSAGE_CREATE events as fast as the socket takes them.

Benchmark producer for bench/gateway/run: the frames are built (and, with zlib-stream,
compressed through one shared context) before the client connects, then written to the
socket in large batches, so the producer is never what is measured. It speaks just enough
of the websocket protocol: the upgrade, unmasking client frames, Hello, READY after
Identify and the close handshake (the heartbeat interval outlasts a run).

    stream_server.py --count N [--compress] [--mention-every 50]
prints "PORT <port>" on stdout once listening and exits after one client has closed."""
import argparse
import asyncio
import base64
import hashlib
import json
import struct
import sys
import zlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BOT_ID = "1100000000000000001"
GUILD_ID = "1200000000000000002"
CHANNEL_ID = "1300000000000000003"


def ws_frame(payload, binary):
    head = bytes([0x82 if binary else 0x81])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


def message(i, mention):
    """A typical guild MESSAGE_CREATE d (about 900 bytes of JSON)."""
    uid = str(1400000000000000000 + i % 997)
    author = {"id": uid, "username": "user%d" % (i % 997), "global_name": "User %d" % (i % 997),
              "avatar": "a_0123456789abcdef0123456789abcdef", "discriminator": "0",
              "public_flags": 0, "avatar_decoration_data": None}
    content = "is anyone around to look at the flaky test in parser.c? it fails about one run in %d" % (i % 13 + 2)
    mentions = []
    if mention:
        content = "<@%s> %s" % (BOT_ID, content)
        mentions = [{"id": BOT_ID, "username": "coordinator", "bot": True, "discriminator": "0"}]
    return {"id": str(1600000000000000000 + i), "type": 0, "channel_id": CHANNEL_ID,
            "guild_id": GUILD_ID, "author": author, "content": content,
            "timestamp": "2026-12-04T00:00:00.000000+00:00", "edited_timestamp": None,
            "tts": False, "mention_everyone": False, "mentions": mentions, "mention_roles": [],
            "attachments": [], "embeds": [], "pinned": False, "flags": 0, "components": [],
            "nonce": str(9000000 + i),
            "member": {"roles": ["1500000000000000007"], "joined_at": "2025-01-01T00:00:00.000000+00:00",
                       "deaf": False, "mute": False, "flags": 0, "pending": False,
                       "nick": None, "avatar": None, "premium_since": None}}


class Stream:
    def __init__(self, count, compress, mention_every):
        self.compress = compress
        self.z = zlib.compressobj() if compress else None
        # A long interval: the first heartbeat comes long after the run, so no ACK has to be
        # compressed out of order into the pre-built stream.
        self.hello = self.enc({"op": 10, "d": {"heartbeat_interval": 600000}})
        self.ready = self.enc({"op": 0, "s": 1, "t": "READY", "d": {
            "v": 10, "session_id": "bench", "resume_gateway_url": "ws://127.0.0.1:1",
            "user": {"id": BOT_ID, "username": "coordinator", "bot": True},
            "application": {"id": BOT_ID}, "guilds": [{"id": GUILD_ID, "unavailable": True}]}})
        chunks, size = [], 0
        for i in range(count):
            payload = {"op": 0, "s": i + 2, "t": "MESSAGE_CREATE",
                       "d": message(i, mention_every and i % mention_every == 0)}
            f = self.enc(payload)
            chunks.append(f)
            size += len(f)
        self.events = chunks
        self.bytes = size

    def enc(self, obj):
        raw = json.dumps(obj, separators=(",", ":")).encode()
        if self.z:
            return ws_frame(self.z.compress(raw) + self.z.flush(zlib.Z_SYNC_FLUSH), True)
        return ws_frame(raw, False)


async def read_frame(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
    data = bytearray(await reader.readexactly(n))
    for i in range(n):
        data[i] ^= mask[i & 3]
    return b0 & 0x0F, bytes(data)


async def serve(stream, done, client_reader, client_writer):
    head = await client_reader.readuntil(b"\r\n\r\n")
    key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    client_writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    client_writer.write(stream.hello)
    try:
        while True:
            op, data = await read_frame(client_reader)
            if op == 8:  # close: echo the code
                client_writer.write(bytes([0x88, len(data[:2])]) + data[:2])
                await client_writer.drain()
                break
            if op not in (1, 2):
                continue
            msg = json.loads(data)
            if msg.get("op") == 2:
                client_writer.write(stream.ready)
                batch = []
                for f in stream.events:
                    batch.append(f)
                    if len(batch) == 512:
                        client_writer.write(b"".join(batch))
                        batch = []
                        await client_writer.drain()
                client_writer.write(b"".join(batch))
                await client_writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    client_writer.close()
    done.set_result(True)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--compress", action="store_true")
    ap.add_argument("--mention-every", type=int, default=50)
    a = ap.parse_args()
    stream = Stream(a.count, a.compress, a.mention_every)
    done = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(lambda r, w: serve(stream, done, r, w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("PORT %d %d\n" % (port, stream.bytes))
    sys.stdout.flush()
    await done
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
