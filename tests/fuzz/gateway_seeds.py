#!/usr/bin/python3
"""Writes tests/fuzz/corpus/gateway/, the seed corpus of fuzz_gateway.c: scripted
sessions in the record format described at the top of fuzz_gateway.c. The seeds are
committed; rerun this after changing the format."""
import os
import struct
import zlib


def rec(cmd, payload=b""):
    return bytes([cmd]) + struct.pack("<H", len(payload)) + payload


def frame(s):
    return rec(0, s.encode())


def tick(ms):
    return rec(1, struct.pack("<H", ms // 16))


HELLO = '{"op":10,"d":{"heartbeat_interval":41250}}'
READY = ('{"op":0,"s":1,"t":"READY","d":{"v":10,"session_id":"abc",'
         '"resume_gateway_url":"wss://resume.example","user":{"id":"1234567890123456789"}}}')
MSG = '{"op":0,"s":2,"t":"MESSAGE_CREATE","d":{"id":"1","content":"hi \\u00e9","mentions":[]}}'

seeds = {
    "session": rec(2) + frame(HELLO) + frame(READY) + frame(MSG) + tick(30000)
    + frame('{"op":11}') + tick(41250) + frame('{"op":1,"d":null}'),
    "reconnect": rec(2) + frame(HELLO) + frame(READY) + frame('{"op":7,"d":null}')
    + rec(3, struct.pack("<H", 4000)) + rec(2) + frame(HELLO)
    + frame('{"op":0,"s":2,"t":"RESUMED","d":null}'),
    "invalid": rec(2) + frame(HELLO) + frame(READY) + frame('{"op":9,"d":false}')
    + rec(3, struct.pack("<H", 4000)) + tick(6000) + rec(2) + frame(HELLO),
    "fatal": rec(2) + frame(HELLO) + rec(3, struct.pack("<H", 4014)) + tick(60000),
    "backoff": rec(4) + tick(2000) + rec(4) + tick(5000) + rec(4) + rec(2) + tick(60000),
    "send": rec(2) + frame(HELLO) + frame(READY)
    + b"".join(rec(5, b'{"op":3,"d":{"status":"idle"}}') for _ in range(5)) + rec(6),
}

z = zlib.compressobj()
zs = rec(2)
for s in (HELLO, READY, MSG):
    c = z.compress(s.encode()) + z.flush(zlib.Z_SYNC_FLUSH)
    half = len(c) // 2
    zs += rec(7, c[:half]) + rec(7, c[half:])
seeds["zlib"] = zs

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "gateway")
os.makedirs(out, exist_ok=True)
for name, blob in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(blob)
