"""The fake gateway: websocket sessions, dispatch, Resume, zlib-stream, close codes."""

import asyncio
import json
import logging
import random
import struct
import time
import zlib
from collections import deque

from aiohttp import web, WSMsgType

import world

log = logging.getLogger("fakediscord.gateway")


class Session:
    def __init__(self, sid, shard, intents, identify):
        self.id = sid
        self.shard = shard          # [id, count]
        self.intents = intents
        self.identify = identify
        self.seq = 0
        self.events = []            # [(s, payload dict)] for replay
        self.conn = None
        self.valid = True

    def wants(self, guild_id):
        sid, count = self.shard
        if guild_id is None:
            return sid == 0
        return (int(guild_id) >> 22) % count == sid


class Conn:
    _ids = 0

    def __init__(self, request, ws, kind):
        Conn._ids += 1
        self.id = Conn._ids
        self.request = request
        self.ws = ws
        self.kind = kind            # "gateway" (first URL) or "resume" (resume_gateway_url)
        q = request.query
        self.query = dict(q)
        self.path = request.path
        self.zlib = q.get("compress") == "zlib-stream"
        self.z = zlib.compressobj() if self.zlib else None
        self.lock = asyncio.Lock()
        self.session = None
        self.identified = False
        self.acks = True
        self.sent_times = deque()
        self.last_heartbeat = time.monotonic()
        self.opened = time.time()
        self.closed = None
        self.close_code = None      # code the client sent, or we sent
        self.closed_by = None       # "client" | "server" | "drop"
        self.heartbeats = 0
        self.received = []          # client payloads: {op, d, time, size}
        self.sent = []              # server payloads: {op, t, s}
        self.tasks = []
        self.close_done = None
        self.hello_at = None

    def info(self):
        return {"id": self.id, "kind": self.kind, "path": self.path, "query": self.query, "zlib": self.zlib,
                "identified": self.identified, "session_id": self.session.id if self.session else None,
                "opened": self.opened, "hello_at": self.hello_at, "closed": self.closed, "close_code": self.close_code,
                "closed_by": self.closed_by, "heartbeats": self.heartbeats,
                "received": len(self.received), "sent": self.sent, "acks": self.acks}

    @property
    def alive(self):
        return self.closed is None and not self.ws.closed


class Gateway:
    def __init__(self, fake):
        self.fake = fake
        self.cfg = fake.cfg
        self.conns = []
        self.sessions = {}
        self.counters = {"connections": 0, "identify": 0, "resume": 0, "resumed": 0,
                         "resume_wrong_url": 0, "invalid_session_sent": 0, "heartbeats": 0,
                         "heartbeat_acks": 0, "heartbeat_seq_mismatch": 0, "frames_received": 0,
                         "fragments_sent": 0, "identify_too_fast": 0}
        self.identify_times = {}    # rate-limit bucket (shard_id % max_concurrency) -> monotonic
        self.frames = []            # every client payload, across connections
        self.acks_default = True
        self.session_start_remaining = self.cfg["session_start_remaining"]

    # ---- sending -------------------------------------------------------

    async def _write_frames(self, conn, opcode, payload):
        transport = conn.ws._writer.transport if conn.ws._writer else None
        if transport is None or transport.is_closing():
            raise ConnectionResetError("closed")
        size = self.cfg["fragment_size"]
        if size <= 0:
            if (conn.zlib and self.cfg["fragment_compressed"]) or \
                    (not conn.zlib and self.cfg["fragment_text"]):
                size = max(1, (len(payload) + 2) // 3)
            else:
                size = len(payload) or 1
        chunks = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
        for i, chunk in enumerate(chunks):
            op = opcode if i == 0 else 0
            fin = 0x80 if i == len(chunks) - 1 else 0
            n = len(chunk)
            if n < 126:
                header = struct.pack("!BB", fin | op, n)
            elif n < 65536:
                header = struct.pack("!BBH", fin | op, 126, n)
            else:
                header = struct.pack("!BBQ", fin | op, 127, n)
            transport.write(header + chunk)
            if len(chunks) > 1:
                self.counters["fragments_sent"] += 1
                await asyncio.sleep(0)  # separate writes, so fragments tend to arrive apart
                if transport.is_closing():
                    raise ConnectionResetError("closed")

    async def send(self, conn, obj):
        data = json.dumps(obj, separators=(",", ":")).encode()
        async with conn.lock:
            if not conn.alive:
                return False
            if conn.zlib:
                payload = conn.z.compress(data) + conn.z.flush(zlib.Z_SYNC_FLUSH)
                opcode = 0x2
            else:
                payload = data
                opcode = 0x1
            try:
                await self._write_frames(conn, opcode, payload)
            except (ConnectionResetError, RuntimeError):
                return False
        conn.sent.append({"op": obj.get("op"), "t": obj.get("t"), "s": obj.get("s"),
                          "time": time.time()})
        self.fake.changed()
        return True

    async def close(self, conn, code, reason=""):
        if not conn.alive:
            return
        conn.close_code = code
        conn.closed_by = "server"
        conn.close_done = asyncio.Event()
        if code in (4007, 4009) and conn.session:
            conn.session.valid = False
            self.sessions.pop(conn.session.id, None)
        async with conn.lock:
            try:
                await conn.ws.close(code=code, message=reason.encode())
            except Exception:  # noqa: BLE001 - the peer may already be gone
                pass
        conn.close_done.set()
        self._mark_closed(conn)

    def drop(self, conn):
        if conn.alive:
            conn.closed_by = "drop"
            conn.request.transport.abort()
            self._mark_closed(conn)

    def _mark_closed(self, conn):
        if conn.closed is None:
            log.info("connection %d closed by %s, code %s", conn.id, conn.closed_by or "client",
                     conn.close_code if conn.close_code is not None else conn.ws.close_code)
            conn.closed = time.time()
            if conn.session and conn.session.conn is conn:
                conn.session.conn = None
            me = asyncio.current_task()
            for t in conn.tasks:
                if t is not me:
                    t.cancel()
            self.fake.changed()

    # ---- dispatch ------------------------------------------------------

    def _filter(self, session, t, d, guild_id):
        intents = session.intents
        if t in ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE"):
            need = world.INTENT_GUILD_MESSAGES if guild_id else world.INTENT_DIRECT_MESSAGES
            if not intents & need:
                return None
            if t != "MESSAGE_DELETE" and not intents & world.INTENT_MESSAGE_CONTENT:
                bot_id = self.cfg["bot_user"]["id"]
                mentioned = any(u.get("id") == bot_id for u in d.get("mentions", []))
                own = d.get("author", {}).get("id") == bot_id
                if guild_id and not mentioned and not own:
                    d = dict(d, content="", embeds=[], attachments=[], components=[])
        elif t in ("GUILD_CREATE", "GUILD_UPDATE", "CHANNEL_CREATE", "THREAD_CREATE"):
            if not intents & world.INTENT_GUILDS:
                return None
        return d

    async def dispatch(self, t, d, guild_id=None, session=None):
        """Send a dispatch to every valid session whose shard covers guild_id."""
        targets = [session] if session else [s for s in self.sessions.values()
                                             if s.valid and s.wants(guild_id)]
        sent = 0
        for s in targets:
            fd = self._filter(s, t, d, guild_id)
            if fd is None:
                continue
            s.seq += 1
            payload = {"op": 0, "t": t, "s": s.seq, "d": fd}
            s.events.append((s.seq, payload))
            if s.conn and s.conn.alive:
                await self.send(s.conn, payload)
            sent += 1
        return sent

    def live(self):
        return [c for c in self.conns if c.alive]

    def current(self):
        live = self.live()
        return live[-1] if live else None

    # ---- the websocket -------------------------------------------------

    async def handler(self, request):
        kind = request.app["kind"]
        ws = web.WebSocketResponse(compress=False, max_msg_size=1 << 24, autoping=True,
                                   timeout=2.0, autoclose=True)
        await ws.prepare(request)
        conn = Conn(request, ws, kind)
        self.conns.append(conn)
        self.counters["connections"] += 1
        conn.acks = self.acks_default
        self.fake.changed()
        log.info("connection %d on %s %s", conn.id, kind, request.query_string)
        try:
            if conn.query.get("v") != "10":
                await self.close(conn, 4012, "Invalid API version")
                return ws
            if conn.query.get("encoding", "json") != "json" or \
                    conn.query.get("compress", "zlib-stream") != "zlib-stream":
                await self.close(conn, 4002, "Error while decoding payload.")
                return ws
            conn.tasks.append(asyncio.ensure_future(self._hello(conn)))
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    raw = msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data
                    await self._received(conn, raw)
                    if not conn.alive:
                        break
                elif msg.type == WSMsgType.ERROR:
                    break
            if conn.close_done is not None:
                # a close we started from another task: let it send its code, or aiohttp
                # would close with 1000 when this handler returns
                try:
                    await asyncio.wait_for(conn.close_done.wait(), 5)
                except asyncio.TimeoutError:
                    pass
            if conn.closed is None and conn.closed_by is None:
                conn.close_code = ws.close_code
                conn.closed_by = "client"
                if ws.close_code in (1000, 1001) and conn.session:
                    # Discord: closing with 1000/1001 ends the session; it cannot be resumed
                    conn.session.valid = False
                    self.sessions.pop(conn.session.id, None)
        finally:
            self._mark_closed(conn)
        return ws

    async def _hello(self, conn):
        if self.cfg["hello_delay"]:
            await asyncio.sleep(self.cfg["hello_delay"])
        if self.cfg["op7_before_hello"] > 0:
            self.cfg["op7_before_hello"] -= 1
            await self.send(conn, {"op": 7, "s": None, "t": None, "d": None})
            return
        if not self.cfg["send_hello"]:
            return
        conn.last_heartbeat = time.monotonic()
        conn.hello_at = time.time()
        await self.send(conn, {"op": 10, "s": None, "t": None,
                               "d": {"heartbeat_interval": self.cfg["heartbeat_interval"]}})
        code = self.cfg["heartbeat_timeout_code"]
        if not code:
            return
        limit = self.cfg["heartbeat_interval"] / 1000.0 * self.cfg["heartbeat_timeout_factor"] + 1.0
        while conn.alive:
            await asyncio.sleep(max(0.05, conn.last_heartbeat + limit - time.monotonic()))
            if conn.alive and time.monotonic() - conn.last_heartbeat >= limit:
                log.info("connection %d missed its heartbeats", conn.id)
                await self.close(conn, code, "Session timed out")

    async def _received(self, conn, raw):
        now = time.monotonic()
        entry = {"conn": conn.id, "size": len(raw), "time": time.time(), "op": None, "d": None}
        conn.received.append(entry)
        self.frames.append(entry)
        self.counters["frames_received"] += 1
        self.fake.changed()
        if len(raw) > self.cfg["max_payload"]:
            await self.close(conn, 4002, "Error while decoding payload.")
            return
        window = self.cfg["gateway_send_window"]
        conn.sent_times.append(now)
        while conn.sent_times and conn.sent_times[0] <= now - window:
            conn.sent_times.popleft()
        if len(conn.sent_times) > self.cfg["gateway_send_limit"]:
            await self.close(conn, 4008, "Rate limited.")
            return
        try:
            p = json.loads(raw)
            op = p["op"]
            d = p.get("d")
        except (ValueError, KeyError, TypeError):
            await self.close(conn, 4002, "Error while decoding payload.")
            return
        entry["op"] = op
        log.info("connection %d got op %s", conn.id, op)
        entry["d"] = d if op != 2 and op != 6 else _redact(d, self.cfg["token"])
        if op == 1:
            await self._heartbeat(conn, d)
        elif op == 2:
            await self._identify(conn, d)
        elif op == 6:
            await self._resume(conn, d)
        elif op in (3, 4, 8, 31):
            if not conn.identified:
                await self.close(conn, 4003, "Not authenticated.")
        else:
            await self.close(conn, 4001, "Unknown opcode.")

    async def _heartbeat(self, conn, d):
        conn.last_heartbeat = time.monotonic()
        conn.heartbeats += 1
        self.counters["heartbeats"] += 1
        if conn.session and not self._seq_plausible(conn, d):
            self.counters["heartbeat_seq_mismatch"] += 1
        if conn.acks:
            self.counters["heartbeat_acks"] += 1
            await self.send(conn, {"op": 11, "s": None, "t": None, "d": None})

    @staticmethod
    def _seq_plausible(conn, d):
        """A heartbeat's d must be the last seq the client received. Dispatches still in
        flight make a lower value legitimate, so anything between the seq of what was sent
        more than 0.5 s ago and the newest seq is accepted."""
        sent = [x for x in conn.sent if x["s"] is not None]
        if not sent:
            return d is None or (isinstance(d, int) and d <= conn.session.seq)
        if not isinstance(d, int) or isinstance(d, bool):
            return False
        old = [x["s"] for x in sent if x["time"] < time.time() - 0.5]
        floor = max(old) if old else 0
        return floor <= d <= conn.session.seq

    async def _identify(self, conn, d):
        self.counters["identify"] += 1
        if conn.identified:
            await self.close(conn, 4005, "Already authenticated.")
            return
        if not isinstance(d, dict):
            await self.close(conn, 4002, "Error while decoding payload.")
            return
        if d.get("token") != self.cfg["token"]:
            await self.close(conn, 4004, "Authentication failed.")
            return
        props = d.get("properties")
        if not isinstance(props, dict) or not all(isinstance(props.get(k), str)
                                                  for k in ("os", "browser", "device")):
            await self.close(conn, 4002, "Error while decoding payload.")
            return
        intents = d.get("intents")
        if not isinstance(intents, int) or isinstance(intents, bool) or intents < 0 \
                or intents & ~world.ALL_INTENTS:
            await self.close(conn, 4013, "Invalid intent(s).")
            return
        allowed = self.cfg["allowed_intents"]
        for name, bit in world.PRIVILEGED_INTENTS.items():
            if intents & bit and name not in allowed:
                await self.close(conn, 4014, "Disallowed intent(s).")
                return
        shard = d.get("shard", [0, 1])
        if not (isinstance(shard, list) and len(shard) == 2 and all(isinstance(x, int) for x in shard)
                and shard[1] >= 1 and 0 <= shard[0] < shard[1]):
            await self.close(conn, 4010, "Invalid shard.")
            return
        if self.cfg["shards_required"] and shard[1] < self.cfg["shards_required"]:
            await self.close(conn, 4011, "Sharding required.")
            return
        if self.session_start_remaining <= 0:
            await self.close(conn, 4004, "Authentication failed.")
            return
        rl_key = shard[0] % max(1, self.cfg["max_concurrency"])
        last = self.identify_times.get(rl_key)
        now = time.monotonic()
        if last is not None and now - last < self.cfg["identify_window"]:
            self.counters["identify_too_fast"] += 1
            if self.cfg["enforce_identify_window"]:
                await self.invalid_session(conn, False)
                return
        self.identify_times[rl_key] = now
        self.session_start_remaining -= 1
        sid = "%032x" % random.getrandbits(128)
        s = Session(sid, shard, intents, _redact(d, self.cfg["token"]))
        self.sessions[sid] = s
        s.conn = conn
        conn.session = s
        conn.identified = True
        self.fake.changed()
        if not self.cfg["send_ready"]:
            return
        ready = {
            "v": 10, "user": dict(self.cfg["bot_user"], verified=True, mfa_enabled=False, flags=0),
            "guilds": [{"id": g["id"], "unavailable": True} for g in self.fake.guilds
                       if s.wants(g["id"])],
            "session_id": sid, "session_type": "normal",
            "resume_gateway_url": self.fake.resume_gateway_url,
            "shard": shard, "application": {"id": self.cfg["application_id"], "flags": 0},
            "private_channels": [], "relationships": [], "presences": [],
            "guild_join_requests": [], "geo_ordered_rtc_regions": ["local"],
            "user_settings": {}, "_trace": ["[\"fake-gateway\",{\"micros\":0}]"],
        }
        await self.dispatch("READY", ready, session=s)
        for g in self.fake.guilds:
            if s.wants(g["id"]):
                await self.dispatch("GUILD_CREATE", self.fake.guild_create(g), session=s)

    async def _resume(self, conn, d):
        self.counters["resume"] += 1
        if conn.identified:
            await self.close(conn, 4005, "Already authenticated.")
            return
        if not isinstance(d, dict) or not isinstance(d.get("session_id"), str):
            await self.close(conn, 4002, "Error while decoding payload.")
            return
        if d.get("token") != self.cfg["token"]:
            await self.close(conn, 4004, "Authentication failed.")
            return
        s = self.sessions.get(d["session_id"])
        if conn.kind != "resume":
            self.counters["resume_wrong_url"] += 1
            if self.cfg["strict_resume_url"]:
                s = None
        if s is None or not s.valid:
            await self.invalid_session(conn, False)
            return
        seq = d.get("seq")
        if not isinstance(seq, int) or seq > s.seq or seq < 0:
            await self.close(conn, 4007, "Invalid seq.")
            return
        old = s.conn
        if old is not None and old is not conn and old.alive:
            await self.close(old, 4000, "Session resumed elsewhere")
        s.conn = conn
        conn.session = s
        conn.identified = True
        self.counters["resumed"] += 1
        self.fake.changed()
        for es, payload in s.events:
            if es > seq:
                await self.send(conn, payload)
        s.seq += 1
        resumed = {"op": 0, "t": "RESUMED", "s": s.seq, "d": {"_trace": ["fake-gateway"]}}
        s.events.append((s.seq, resumed))
        await self.send(conn, resumed)

    async def invalid_session(self, conn, resumable):
        self.counters["invalid_session_sent"] += 1
        if not resumable and conn.session:
            conn.session.valid = False
            self.sessions.pop(conn.session.id, None)
        if not resumable:
            # the client may Identify again, on this connection or a new one
            conn.session = None
            conn.identified = False
        await self.send(conn, {"op": 9, "s": None, "t": None, "d": bool(resumable)})

    def counts(self):
        return dict(self.counters, live=len(self.live()), sessions=len(self.sessions))


def _redact(d, token):
    """Client payload as recorded: the token replaced by whether it was right."""
    if isinstance(d, dict) and "token" in d:
        d = dict(d)
        d["token_ok"] = d.pop("token") == token
    return d
