#!/usr/bin/python3
"""A fake Discord (gateway + REST + a control API) on loopback, for end-to-end tests.

Run:  /usr/bin/python3 server.py [--scenario JSON] [--state-dir DIR]
Prints one JSON line on stdout with its URLs once it listens, then serves until
SIGTERM/SIGINT or until its stdin reaches EOF (so it dies with the test that started it).
See README.md for the scenario options and the control API.
"""

import argparse
import asyncio
import base64
import fnmatch
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from aiohttp import web  # noqa: E402

import validate  # noqa: E402
import world  # noqa: E402
from gateway import Gateway  # noqa: E402

log = logging.getLogger("fakediscord")
API = "/api/v10"
UA_RE = re.compile(r"^DiscordBot \((\S+), ([^)\s][^)]*)\)")
MENTION_RE = re.compile(r"<@!?(\d+)>")
ROLE_MENTION_RE = re.compile(r"<@&(\d+)>")
EPHEMERAL = 64
LOADING = 128


def jresp(status, body=None, headers=None):
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.json_response(body, status=status, headers=headers, dumps=lambda o: json.dumps(o))


class Bucket:
    def __init__(self, limit, window):
        self.limit = limit
        self.window = window
        self.remaining = limit
        self.reset_at = 0.0       # monotonic
        self.reset_epoch = 0.0


class Fake:
    def __init__(self, cfg, state_dir):
        self.cfg = cfg
        self.state_dir = state_dir
        self.ids = world.Snowflakes()
        self.version = 0
        self._changed = asyncio.Event()
        self.users = {u["id"]: u for u in (cfg["users"] or world.default_users())}
        self.bot = cfg["bot_user"]
        self.users[self.bot["id"]] = self.bot
        self.guilds = cfg["guilds"] or world.default_guilds()
        self.channels = {}        # id -> {"obj": channel, "guild_id": id|None}
        for g in self.guilds:
            for c in g.get("channels", []) + g.get("threads", []):
                c["guild_id"] = g["id"]
                self.channels[c["id"]] = {"obj": c, "guild_id": g["id"]}
        self.dms = {}             # user id -> channel id
        self._dm(world.USER_ID if world.USER_ID in self.users else next(iter(self.users)),
                 world.DM_CHANNEL_ID)
        self.messages = {}        # channel id -> [message]
        self.msg_by_id = {}
        self.edits = []
        self.deletions = []
        self.typing = []
        self.reactions = []
        self.files = {}           # attachment id -> bytes
        self.interactions = {}    # id -> record
        self.by_token = {}
        self.interaction_responses = []
        self.commands = {}        # "global" | guild id -> [command]
        self.command_puts = []
        self.requests = []
        self.rest = {"requests": 0, "exhausted_hits": 0, "early_retries": 0, "rate_limited": 0,
                     "global_rate_limited": 0, "invalid_requests": 0, "bad_auth": 0,
                     "bad_user_agent": 0, "nonce_dedup": 0, "injected": 0, "validation_errors": 0,
                     "max_inflight_per_route": 0, "banned_requests": 0}
        self.invalid_times = deque()
        self.banned_until = 0.0
        self.inflight = {}        # (route, major) -> requests being answered
        self.buckets = {}
        self.blocked = {}         # (route, major) -> monotonic until (after an injected 429)
        self.global_times = deque()
        self.global_until = 0.0
        self.failures = []
        self.nonces = {}          # (channel, nonce) -> (message id, monotonic)
        self.gateway = Gateway(self)
        self.sites = {}           # name -> (runner, port, server)
        self.refused = {}
        self.ssl = None
        self.ca_file = None
        self.urls = {}

    # ---- bookkeeping ---------------------------------------------------

    def changed(self):
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, version, timeout):
        deadline = time.monotonic() + timeout
        while self.version <= version:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ev = self._changed
            try:
                await asyncio.wait_for(ev.wait(), left)
            except asyncio.TimeoutError:
                break
        return self.version

    @property
    def resume_gateway_url(self):
        return self.urls["resume_gateway_url"]

    def _dm(self, user_id, cid=None):
        if user_id in self.dms:
            return self.dms[user_id]
        cid = cid or self.ids.next()
        obj = {"id": cid, "type": 1, "last_message_id": None, "flags": 0,
               "recipients": [self.users[user_id]]}
        self.channels[cid] = {"obj": obj, "guild_id": None}
        self.dms[user_id] = cid
        return cid

    def guild(self, gid):
        return next((g for g in self.guilds if g["id"] == gid), None)

    def member(self, gid, user, roles=None):
        g = self.guild(gid)
        if roles is None:
            roles = (g or {}).get("member_roles", {}).get(user["id"], [])
        return {"user": user, "roles": list(roles), "nick": None, "avatar": None,
                "joined_at": "2025-01-01T00:00:00.000000+00:00", "deaf": False, "mute": False,
                "flags": 0, "pending": False, "permissions": "1071698660929"}

    def guild_create(self, g):
        members = [self.member(g["id"], u) for u in self.users.values()]
        for i in range(self.cfg["guild_create_members"]):
            uid = str(1600000000000000000 + i)
            members.append(self.member(g["id"], {"id": uid, "username": "member%06d" % i,
                                                 "discriminator": "0", "global_name": None,
                                                 "avatar": None}))
        d = {k: v for k, v in g.items() if k != "member_roles"}
        d.update({"unavailable": False, "large": len(members) > 250,
                  "member_count": len(members), "members": members, "presences": [],
                  "voice_states": [], "stage_instances": [], "guild_scheduled_events": [],
                  "joined_at": "2025-01-01T00:00:00.000000+00:00", "emojis": [], "stickers": [],
                  "features": [], "icon": None, "preferred_locale": "en-US",
                  "system_channel_id": None, "afk_channel_id": None, "afk_timeout": 300,
                  "verification_level": 0, "default_message_notifications": 0,
                  "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0,
                  "premium_tier": 0, "application_id": None})
        return d

    # ---- messages ------------------------------------------------------

    def _mentions(self, content, am, roles_in_guild):
        content = content or ""
        parse = ["users", "roles", "everyone"]
        users_allowed, roles_allowed = [], []
        if am is not None:
            parse = am.get("parse") or []
            users_allowed = am.get("users") or []
            roles_allowed = am.get("roles") or []
        mentioned = [uid for uid in dict.fromkeys(MENTION_RE.findall(content))
                     if uid in self.users and ("users" in parse or uid in users_allowed)]
        role_ids = [rid for rid in dict.fromkeys(ROLE_MENTION_RE.findall(content))
                    if rid in roles_in_guild and ("roles" in parse or rid in roles_allowed)]
        everyone = ("@everyone" in content or "@here" in content) and "everyone" in parse
        return [self.users[u] for u in mentioned], role_ids, everyone

    def new_message(self, channel_id, author, body, attachments=(), mtype=0, extra=None):
        ch = self.channels[channel_id]
        gid = ch["guild_id"]
        g = self.guild(gid) if gid else None
        roles = {r["id"] for r in g["roles"]} if g else set()
        mentions, mroles, everyone = self._mentions(body.get("content"), body.get("allowed_mentions"), roles)
        m = {"id": self.ids.next(), "channel_id": channel_id, "author": author,
             "content": body.get("content") or "", "timestamp": world.iso_now(),
             "edited_timestamp": None, "tts": bool(body.get("tts")), "mention_everyone": everyone,
             "mentions": mentions, "mention_roles": mroles, "attachments": list(attachments),
             "embeds": body.get("embeds") or [], "components": body.get("components") or [],
             "pinned": False, "type": mtype, "flags": body.get("flags") or 0}
        if body.get("nonce") is not None:
            m["nonce"] = body["nonce"]
        ref = body.get("message_reference")
        if ref:
            m["message_reference"] = {"type": 0, "message_id": ref["message_id"],
                                      "channel_id": channel_id, "guild_id": gid}
            refd = self.msg_by_id.get(ref["message_id"])
            m["referenced_message"] = dict(refd) if refd else None
            if mtype == 0:
                m["type"] = 19
        if extra:
            m.update(extra)
        self.messages.setdefault(channel_id, []).append(m)
        self.msg_by_id[m["id"]] = m
        ch["obj"]["last_message_id"] = m["id"]
        self.changed()
        return m

    def public(self, m):
        return {k: v for k, v in m.items() if not k.startswith("_")}

    async def dispatch_message(self, t, m):
        gid = self.channels[m["channel_id"]]["guild_id"]
        if m.get("flags", 0) & EPHEMERAL:
            return
        d = self.public(m)
        if gid:
            d["guild_id"] = gid
            if t == "MESSAGE_CREATE":
                d["member"] = {k: v for k, v in self.member(gid, m["author"], m.get("_roles")).items()
                               if k != "user"}
        await self.gateway.dispatch(t, d, guild_id=gid)

    # ---- REST plumbing -------------------------------------------------

    def route_limit(self, route):
        conf = self.cfg["routes"].get(route)
        limit, window = world.DEFAULT_ROUTE_LIMITS.get(route, (5, 5.0))
        bucket = world.bucket_hash(route)
        if conf:
            limit = conf.get("limit", limit)
            window = conf.get("window", window)
            bucket = conf.get("bucket", bucket)
        return limit, window * self.cfg["rate_limit_scale"], bucket

    @staticmethod
    def major(route, match):
        if "{interaction_token}" in route and "{interaction_id}" in route:
            return "interaction:%s:%s" % (match["interaction_id"], match["interaction_token"])
        if "{interaction_token}" in route:
            return "webhook:%s:%s" % (match["application_id"], match["interaction_token"])
        for key in ("channel_id", "guild_id"):
            if key in match:
                return "%s:%s" % (key, match[key])
        return ""

    @staticmethod
    def exempt_global(route):
        return route.startswith("POST /interactions/") or "{interaction_token}" in route

    def rl_headers(self, b, bucket):
        now = time.monotonic()
        after = max(0.0, b.reset_at - now)
        return {"X-RateLimit-Limit": str(b.limit), "X-RateLimit-Remaining": str(max(0, b.remaining)),
                "X-RateLimit-Reset": "%.3f" % b.reset_epoch, "X-RateLimit-Reset-After": "%.3f" % after,
                "X-RateLimit-Bucket": bucket}

    def too_many(self, retry_after, is_global, scope, headers=None, code=None):
        h = dict(headers or {})
        h["Retry-After"] = str(max(1, math.ceil(retry_after)))
        h["X-RateLimit-Scope"] = scope
        if is_global:
            h["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": round(retry_after, 3),
                "global": is_global}
        if code is not None:
            body["code"] = code
        return jresp(429, body, h)

    def take_bucket(self, route, major):
        """Returns (bucket, hash, response_if_limited)."""
        limit, window, bh = self.route_limit(route)
        key = (bh, major)
        now = time.monotonic()
        b = self.buckets.get(key)
        if b is None or now >= b.reset_at:
            b = Bucket(limit, window)
            b.reset_at = now + window
            b.reset_epoch = time.time() + window
            self.buckets[key] = b
        if b.remaining <= 0 and self.cfg["rate_limits"]:
            self.rest["exhausted_hits"] += 1
            self.rest["rate_limited"] += 1
            return b, bh, self.too_many(b.reset_at - now, False, "user", self.rl_headers(b, bh))
        b.remaining -= 1
        return b, bh, None

    def take_global(self):
        if not self.cfg["rate_limits"]:
            return None
        now = time.monotonic()
        if now < self.global_until:
            self.rest["exhausted_hits"] += 1
            self.rest["global_rate_limited"] += 1
            return self.too_many(self.global_until - now, True, "global")
        w = self.cfg["global_window"]
        while self.global_times and self.global_times[0] <= now - w:
            self.global_times.popleft()
        if len(self.global_times) >= self.cfg["global_limit"]:
            self.global_until = self.global_times[0] + w
            self.rest["exhausted_hits"] += 1
            self.rest["global_rate_limited"] += 1
            return self.too_many(self.global_until - now, True, "global")
        self.global_times.append(now)
        return None

    def find_failure(self, method, route, path):
        for f in self.failures:
            if f["times"] <= 0:
                continue
            if f.get("method") and f["method"].upper() != method:
                continue
            if f.get("route") and f["route"] != route:
                continue
            if f.get("path") and not fnmatch.fnmatch(path, f["path"]):
                continue
            return f
        return None

    def failure_response(self, f, route, major, headers):
        status = f["status"]
        if status == 429:
            ra = float(f.get("retry_after", 1.0))
            if f.get("global"):
                self.global_until = time.monotonic() + ra
            else:
                self.blocked[(route, major)] = time.monotonic() + ra
            scope = f.get("scope") or ("global" if f.get("global") else "user")
            h = headers if not f.get("global") else None
            return self.too_many(ra, bool(f.get("global")), scope, h, f.get("code"))
        if "body" in f:
            b = f["body"]
            if isinstance(b, str):
                return web.Response(status=status, text=b, content_type="text/html")
            return jresp(status, b)
        if status == 502:
            return web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>",
                                content_type="text/html")
        reason = {500: "Internal Server Error", 503: "Service Unavailable",
                  504: "Gateway Timeout"}.get(status, "Error")
        return jresp(status, {"message": "%d: %s" % (status, reason), "code": 0})

    async def read_body(self, request, rec):
        """Returns (json body or None, files list, error response or None)."""
        ctype = request.content_type
        files = []
        if ctype == "multipart/form-data":
            body = None
            reader = await request.multipart()
            parts = []
            while True:
                part = await reader.next()
                if part is None:
                    break
                data = await part.read(decode=False)
                info = {"name": part.name, "filename": part.filename,
                        "content_type": part.headers.get("Content-Type"), "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()}
                if part.name == "payload_json":
                    try:
                        body = json.loads(data)
                    except ValueError:
                        return None, [], jresp(400, {"code": 50109,
                                                     "message": "The request body contains invalid JSON."})
                    info["json"] = body
                elif part.name and re.match(r"^files\[\d+\]$", part.name):
                    if not part.filename:
                        return None, [], jresp(400, {"code": 50035, "message": "Invalid Form Body",
                                                     "errors": {part.name: {"_errors": [
                                                         {"code": "BINARY_TYPE_REQUIRED",
                                                          "message": "This field is required"}]}}})
                    if len(data) > self.cfg["max_file_size"]:
                        return None, [], jresp(413, {"code": 40005, "message": "Request entity too large"})
                    files.append({"index": int(part.name[6:-1]), "filename": part.filename,
                                  "content_type": part.headers.get("Content-Type"), "data": data})
                parts.append(info)
            rec["multipart"] = parts
            rec["body"] = body
            return (body if body is not None else {}), files, None
        raw = await request.read()
        if not raw:
            return None, [], None
        if ctype != "application/json":
            rec["raw"] = raw[:2000].decode("utf-8", "replace")
            return None, [], jresp(400, {"code": 50109, "message": "The request body contains invalid JSON."})
        try:
            body = json.loads(raw)
        except ValueError:
            rec["raw"] = raw[:2000].decode("utf-8", "replace")
            return None, [], jresp(400, {"code": 50109, "message": "The request body contains invalid JSON."})
        rec["body"] = body
        return body, files, None

    @web.middleware
    async def rest_middleware(self, request, handler):
        mi = request.match_info
        resource = mi.route.resource if mi.route else None
        canonical = resource.canonical if resource is not None else None
        route = None
        if canonical and canonical.startswith(API):
            route = "%s %s" % (request.method, canonical[len(API):])
        hdrs = {k: v for k, v in request.headers.items()}
        auth = request.headers.get("Authorization")
        if auth is not None:
            hdrs["Authorization"] = "Bot <redacted>" if auth.startswith("Bot ") else "<redacted>"
        rec = {"n": len(self.requests) + 1, "time": time.time(), "method": request.method,
               "path": request.path, "query": request.query_string, "route": route,
               "headers": hdrs, "auth_ok": auth == "Bot " + self.cfg["token"], "body": None,
               "status": None, "rate_limited": False, "injected": None}
        self.requests.append(rec)
        self.rest["requests"] += 1
        key = (route, self.major(route, mi)) if route else None
        if key:
            n = self.inflight[key] = self.inflight.get(key, 0) + 1
            if n > self.rest["max_inflight_per_route"]:
                self.rest["max_inflight_per_route"] = n
        now = time.monotonic()
        try:
            if now < self.banned_until:
                self.rest["banned_requests"] += 1
                rec["banned"] = True
                resp = web.Response(status=429, text="error code: 1015", content_type="text/plain",
                                    headers={"Retry-After": str(math.ceil(self.banned_until - now))})
            else:
                resp = await self._rest_inner(request, handler, rec, route, auth)
                if resp.status in (401, 403, 429) and resp.headers.get("X-RateLimit-Scope") != "shared":
                    w = self.cfg["invalid_request_window"]
                    self.invalid_times.append(now)
                    while self.invalid_times and self.invalid_times[0] <= now - w:
                        self.invalid_times.popleft()
                    if len(self.invalid_times) > self.cfg["invalid_request_limit"]:
                        self.banned_until = now + self.cfg["ban_seconds"]
                        self.invalid_times.clear()
                        log.warning("REST: too many invalid requests, banned for %ss", self.cfg["ban_seconds"])
        finally:
            if key:
                self.inflight[key] -= 1
        rec["status"] = resp.status
        log.info("REST %s %s -> %d%s", request.method, request.path, resp.status,
                 " (injected)" if rec["injected"] else "")
        if resp.status in (401, 403, 429):
            self.rest["invalid_requests"] += 1
        self.changed()
        return resp

    async def _rest_inner(self, request, handler, rec, route, auth):
        if route is None:
            return jresp(404, {"message": "404: Not Found", "code": 0})
        interaction_route = "{interaction_token}" in route
        if not interaction_route or auth is not None:
            if auth != "Bot " + self.cfg["token"]:
                self.rest["bad_auth"] += 1
                return jresp(401, {"message": "401: Unauthorized", "code": 0})
        if self.cfg["check_user_agent"] and not UA_RE.match(request.headers.get("User-Agent", "")):
            self.rest["bad_user_agent"] += 1
            return jresp(400, {"message": "Bad Request: the User-Agent must be "
                                          "'DiscordBot ($url, $versionNumber)'", "code": 0})
        major = self.major(route, request.match_info)
        # requests that come back before an (injected) 429's retry_after has elapsed
        until = self.blocked.get((route, major), 0)
        now = time.monotonic()
        if now < until and self.cfg["rate_limits"]:
            self.rest["exhausted_hits"] += 1
            self.rest["early_retries"] += 1
            rec["rate_limited"] = True
            return self.too_many(until - now, False, "user")
        if not self.exempt_global(route):
            r = self.take_global()
            if r is not None:
                rec["rate_limited"] = True
                return r
        b, bh, limited = self.take_bucket(route, major)
        if limited is not None:
            rec["rate_limited"] = True
            return limited
        headers = self.rl_headers(b, bh)
        f = self.find_failure(request.method, route, request.path)
        if f and f.get("when", "before") == "before":
            f["times"] -= 1
            self.rest["injected"] += 1
            rec["injected"] = f["status"]
            return self.failure_response(f, route, major, headers)
        body, files, err = await self.read_body(request, rec)
        if err is not None:
            resp = err
        else:
            request["body"] = body
            request["files"] = files
            request["rec"] = rec
            resp = await handler(request)
        if resp.status == 400:
            self.rest["validation_errors"] += 1
        for k, v in headers.items():
            resp.headers.setdefault(k, v)
        if f and f.get("when") == "after":
            f["times"] -= 1
            self.rest["injected"] += 1
            rec["injected"] = f.get("status") or "delay"
            if f.get("delay"):
                rec["delayed"] = f["delay"]
                await asyncio.sleep(f["delay"])
            if f.get("status"):
                return self.failure_response(f, route, major, headers)
        return resp

    # ---- REST handlers -------------------------------------------------

    async def h_gateway_bot(self, request):
        return jresp(200, {"url": self.urls["gateway_url"], "shards": self.cfg["shards"],
                           "session_start_limit": {
                               "total": self.cfg["session_start_total"],
                               "remaining": self.gateway.session_start_remaining,
                               "reset_after": 86400000,
                               "max_concurrency": self.cfg["max_concurrency"]}})

    async def h_gateway(self, request):
        return jresp(200, {"url": self.urls["gateway_url"]})

    async def h_me(self, request):
        return jresp(200, dict(self.bot, verified=True, mfa_enabled=False, flags=0, bio=""))

    async def h_open_dm(self, request):
        body = request["body"] or {}
        rid = body.get("recipient_id")
        if rid not in self.users:
            return jresp(400, {"code": 50035, "message": "Invalid Form Body", "errors": {
                "recipient_id": {"_errors": [{"code": "USER_NOT_FOUND", "message": "Unknown user"}]}}})
        return jresp(200, self.channels[self._dm(rid)]["obj"])

    def channel_or_404(self, request):
        cid = request.match_info["channel_id"]
        if cid not in self.channels:
            return None, jresp(404, {"message": "Unknown Channel", "code": 10003})
        return cid, None

    def message_or_404(self, cid, mid):
        m = self.msg_by_id.get(mid)
        if m is None or m["channel_id"] != cid or m.get("_deleted"):
            return None, jresp(404, {"message": "Unknown Message", "code": 10008})
        return m, None

    async def h_get_channel(self, request):
        cid, err = self.channel_or_404(request)
        return err if err is not None else jresp(200, self.channels[cid]["obj"])

    async def h_get_message(self, request):
        cid, err = self.channel_or_404(request)
        if err is not None:
            return err
        m, err = self.message_or_404(cid, request.match_info["message_id"])
        return err if err is not None else jresp(200, self.public(m))

    def attachments(self, body, files):
        out = []
        for f in sorted(files, key=lambda x: x["index"]):
            aid = self.ids.next()
            self.files[aid] = f["data"]
            desc = next((a.get("description") for a in body.get("attachments") or []
                         if isinstance(a, dict) and str(a.get("id")) == str(f["index"])), None)
            out.append({"id": aid, "filename": f["filename"], "size": len(f["data"]),
                        "url": "%s/files/%s/%s" % (self.urls["control_url"], aid, f["filename"]),
                        "proxy_url": "%s/files/%s/%s" % (self.urls["control_url"], aid, f["filename"]),
                        "content_type": f["content_type"], "description": desc})
        return out

    def check_reference(self, body):
        ref = body.get("message_reference")
        if ref and ref.get("message_id") not in self.msg_by_id and ref.get("fail_if_not_exists", True):
            return jresp(400, {"code": 50035, "message": "Invalid Form Body", "errors": {
                "message_reference": {"_errors": [{"code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                                                   "message": "Unknown message"}]}}})
        return None

    async def h_create_message(self, request):
        cid, err = self.channel_or_404(request)
        if err is not None:
            return err
        body, files = request["body"], request["files"]
        if body is None:
            return jresp(400, {"code": 50109, "message": "The request body contains invalid JSON."})
        bad = validate.message_body(body, nfiles=len(files))
        if bad:
            return jresp(*bad)
        bad = self.check_reference(body)
        if bad is not None:
            return bad
        if body.get("enforce_nonce") and body.get("nonce") is not None:
            key = (cid, str(body["nonce"]))
            seen = self.nonces.get(key)
            if seen and time.monotonic() - seen[1] < self.cfg["nonce_window"]:
                self.rest["nonce_dedup"] += 1
                return jresp(200, self.public(self.msg_by_id[seen[0]]))
        m = self.new_message(cid, self.bot, body, self.attachments(body, files))
        m["_via"] = "rest"
        if body.get("nonce") is not None:
            self.nonces[(cid, str(body["nonce"]))] = (m["id"], time.monotonic())
        if self.cfg["echo_bot_messages"]:
            await self.dispatch_message("MESSAGE_CREATE", m)
        return jresp(200, self.public(m))

    def apply_edit(self, m, body, files, via):
        before = self.public(m)
        for key in ("content", "embeds", "components", "flags"):
            if key in body:
                v = body[key]
                m[key] = v if v is not None else ("" if key == "content" else
                                                  0 if key == "flags" else [])
        if "attachments" in body or files:
            keep = {str(a.get("id")) for a in body.get("attachments") or [] if isinstance(a, dict)}
            m["attachments"] = [a for a in m["attachments"] if a["id"] in keep] + \
                self.attachments(body, files)
        if "allowed_mentions" in body or "content" in body:
            ch = self.channels[m["channel_id"]]
            g = self.guild(ch["guild_id"]) if ch["guild_id"] else None
            roles = {r["id"] for r in g["roles"]} if g else set()
            m["mentions"], m["mention_roles"], m["mention_everyone"] = self._mentions(
                m["content"], body.get("allowed_mentions"), roles)
        m["edited_timestamp"] = world.iso_now()
        m.setdefault("_history", []).append(before)
        self.edits.append({"channel_id": m["channel_id"], "message_id": m["id"], "via": via,
                           "before": before, "after": self.public(m), "time": time.time()})
        self.changed()

    async def h_edit_message(self, request):
        cid, err = self.channel_or_404(request)
        if err is not None:
            return err
        m, err = self.message_or_404(cid, request.match_info["message_id"])
        if err is not None:
            return err
        body, files = request["body"], request["files"]
        if not isinstance(body, dict):
            return jresp(400, {"code": 50109, "message": "The request body contains invalid JSON."})
        if m["author"]["id"] != self.bot["id"] and any(k in body for k in ("content", "embeds", "components")):
            return jresp(403, {"message": "Cannot edit a message authored by another user", "code": 50005})
        bad = validate.message_body(body, nfiles=len(files), creating=False)
        if bad:
            return jresp(*bad)
        merged = dict(self.public(m), **body)
        if validate.message_body(merged, nfiles=len(files) + len(m["attachments"])):
            return jresp(400, {"message": "Cannot send an empty message", "code": 50006})
        self.apply_edit(m, body, files, "rest")
        await self.dispatch_message("MESSAGE_UPDATE", m)
        return jresp(200, self.public(m))

    async def delete_message(self, m, via):
        m["_deleted"] = True
        self.deletions.append({"channel_id": m["channel_id"], "message_id": m["id"], "via": via,
                               "time": time.time()})
        self.changed()
        gid = self.channels[m["channel_id"]]["guild_id"]
        if not m.get("flags", 0) & EPHEMERAL:
            d = {"id": m["id"], "channel_id": m["channel_id"]}
            if gid:
                d["guild_id"] = gid
            await self.gateway.dispatch("MESSAGE_DELETE", d, guild_id=gid)

    async def h_delete_message(self, request):
        cid, err = self.channel_or_404(request)
        if err is not None:
            return err
        m, err = self.message_or_404(cid, request.match_info["message_id"])
        if err is not None:
            return err
        await self.delete_message(m, "rest")
        return web.Response(status=204)

    async def h_typing(self, request):
        cid, err = self.channel_or_404(request)
        if err is not None:
            return err
        self.typing.append({"channel_id": cid, "time": time.time()})
        self.changed()
        return web.Response(status=204)

    async def h_reaction(self, request):
        cid, err = self.channel_or_404(request)
        if err is not None:
            return err
        m, err = self.message_or_404(cid, request.match_info["message_id"])
        if err is not None:
            return err
        emoji = request.match_info["emoji"]
        if not (re.match(r"^[\w~-]{2,32}:\d+$", emoji) or any(ord(ch) > 127 for ch in emoji)):
            return jresp(400, {"message": "Unknown Emoji", "code": 10014})
        self.reactions.append({"channel_id": cid, "message_id": m["id"], "emoji": emoji,
                               "time": time.time()})
        self.changed()
        return web.Response(status=204)

    def check_app(self, request):
        if request.match_info["application_id"] != self.cfg["application_id"]:
            return jresp(403, {"message": "Missing Access", "code": 50001})
        return None

    async def h_put_commands(self, request):
        err = self.check_app(request)
        if err is not None:
            return err
        gid = request.match_info.get("guild_id")
        if gid is not None and not self.guild(gid):
            return jresp(404, {"message": "Unknown Guild", "code": 10004})
        body = request["body"]
        bad = validate.commands(body)
        if bad:
            return jresp(*bad)
        key = gid or "global"
        old = {(c["name"], c.get("type", 1)): c for c in self.commands.get(key, [])}
        out = []
        for c in body:
            prev = old.get((c["name"], c.get("type", 1)))
            cmd = dict(c)
            cmd.setdefault("type", 1)
            cmd.update({"id": prev["id"] if prev else self.ids.next(),
                        "application_id": self.cfg["application_id"], "version": self.ids.next(),
                        "default_member_permissions": c.get("default_member_permissions"),
                        "nsfw": bool(c.get("nsfw"))})
            if gid:
                cmd["guild_id"] = gid
            out.append(cmd)
        self.commands[key] = out
        self.command_puts.append({"scope": key, "commands": out, "time": time.time()})
        self.changed()
        return jresp(200, out)

    async def h_get_commands(self, request):
        err = self.check_app(request)
        if err is not None:
            return err
        return jresp(200, self.commands.get(request.match_info.get("guild_id") or "global", []))

    # ---- interactions --------------------------------------------------

    def interaction_by_token(self, request):
        it = self.by_token.get(request.match_info["interaction_token"])
        if it is None or request.match_info["application_id"] != self.cfg["application_id"]:
            return None, jresp(404, {"message": "Unknown Webhook", "code": 10015})
        if time.monotonic() - it["created"] > self.cfg["interaction_token_ttl"]:
            if self.cfg["expired_token_code"] == 10062:
                return None, jresp(404, {"message": "Unknown interaction", "code": 10062})
            return None, jresp(401, {"message": "Invalid Webhook Token", "code": 50027})
        return it, None

    async def h_callback(self, request):
        iid = request.match_info["interaction_id"]
        it = self.interactions.get(iid)
        body, files = request["body"], request["files"]
        status, resp = await self._callback(it, request, body, files)
        self.interaction_responses.append({"interaction_id": iid, "kind": "callback",
                                           "type": (body or {}).get("type") if isinstance(body, dict) else None,
                                           "body": body, "status": status, "time": time.time(),
                                           "elapsed": (time.monotonic() - it["created"]) if it else None})
        self.changed()
        return resp

    async def _callback(self, it, request, body, files):
        if it is None or it["token"] != request.match_info["interaction_token"]:
            return 404, jresp(404, {"message": "Unknown interaction", "code": 10062})
        if it["acked"] is not None:
            return 400, jresp(400, {"message": "Interaction has already been acknowledged.", "code": 40060})
        if time.monotonic() - it["created"] > self.cfg["interaction_callback_timeout"]:
            return 404, jresp(404, {"message": "Unknown interaction", "code": 10062})
        if not isinstance(body, dict):
            return 400, jresp(400, {"code": 50109, "message": "The request body contains invalid JSON."})
        rtype = body.get("type")
        allowed = {2: (4, 5, 9), 3: (4, 5, 6, 7, 9), 4: (8,), 5: (4, 5, 6, 7)}[it["type"]]
        if rtype not in allowed:
            return 400, jresp(400, {"code": 50035, "message": "Invalid Form Body", "errors": {
                "type": {"_errors": [{"code": "INTERACTION_RESPONSE_TYPE_INVALID" if rtype in
                                      (4, 5, 6, 7, 8, 9) else "BASE_TYPE_CHOICES",
                                      "message": "Value must be one of %s." % (set(allowed),)}]}}})
        data = body.get("data") or {}
        if rtype in (4, 7):
            bad = validate.message_body(data, nfiles=len(files), creating=(rtype == 4), allow_nonce=False)
            if bad:
                st, b = bad
                if st == 400 and b.get("code") == 50035:
                    b = dict(b, errors={"data": b["errors"]})
                return st, jresp(st, b)
        if rtype == 8:
            choices = data.get("choices")
            if not isinstance(choices, list) or len(choices) > 25:
                return 400, jresp(400, {"code": 50035, "message": "Invalid Form Body", "errors": {
                    "data": {"choices": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                                      "message": "Must be 25 or fewer in length."}]}}}})
        it["acked"] = rtype
        it["response"] = body
        user = it["user"]
        mtype = 20 if it["type"] == 2 else 0
        meta = {"interaction_metadata": {"id": it["id"], "type": it["type"], "user": user},
                "application_id": self.cfg["application_id"], "webhook_id": self.cfg["application_id"]}
        msg = None
        if rtype == 4:
            msg = self.new_message(it["channel_id"], self.bot, data, self.attachments(data, files), mtype, meta)
            msg["_via"] = "callback"
            it["original"] = msg["id"]
            await self.dispatch_message("MESSAGE_CREATE", msg)
        elif rtype == 5:
            flags = LOADING | (data.get("flags", 0) & EPHEMERAL)
            msg = self.new_message(it["channel_id"], self.bot, {"flags": flags}, (), mtype, meta)
            msg["_via"] = "callback"
            it["original"] = msg["id"]
            await self.dispatch_message("MESSAGE_CREATE", msg)
        elif rtype in (6, 7):
            it["original"] = it.get("message_id")
            msg = self.msg_by_id.get(it.get("message_id"))
            if rtype == 7 and msg is not None:
                self.apply_edit(msg, data, files, "callback")
                await self.dispatch_message("MESSAGE_UPDATE", msg)
        self.changed()
        if request.query.get("with_response") in ("true", "True", "1"):
            res = {"interaction": {"id": it["id"], "type": it["type"],
                                   "response_message_id": msg["id"] if msg else None,
                                   "response_message_loading": rtype == 5,
                                   "response_message_ephemeral": bool(data.get("flags", 0) & EPHEMERAL)},
                   "resource": {"type": rtype}}
            if msg:
                res["resource"]["message"] = self.public(msg)
            return 200, jresp(200, res)
        return 204, web.Response(status=204)

    def _webhook_message(self, it, mid):
        if mid == "@original":
            mid = it.get("original")
        elif mid not in it["followups"]:
            mid = None
        m = self.msg_by_id.get(mid) if mid else None
        if m is None or m.get("_deleted"):
            return None, jresp(404, {"message": "Unknown Message", "code": 10008})
        return m, None

    async def h_followup(self, request):
        it, err = self.interaction_by_token(request)
        if err is not None:
            return self._record_followup(request, "followup", err)
        body, files = request["body"], request["files"]
        if it["acked"] is None:
            return self._record_followup(request, "followup", jresp(
                404, {"message": "Unknown Webhook", "code": 10015}), it)
        if body is None:
            return self._record_followup(request, "followup", jresp(
                400, {"code": 50109, "message": "The request body contains invalid JSON."}))
        bad = validate.message_body(body, nfiles=len(files), allow_nonce=False)
        if bad:
            return self._record_followup(request, "followup", jresp(*bad))
        meta = {"interaction_metadata": {"id": it["id"], "type": it["type"], "user": it["user"]},
                "application_id": self.cfg["application_id"], "webhook_id": self.cfg["application_id"]}
        m = self.new_message(it["channel_id"], self.bot, body, self.attachments(body, files), 0, meta)
        m["_via"] = "followup"
        it["followups"].append(m["id"])
        await self.dispatch_message("MESSAGE_CREATE", m)
        return self._record_followup(request, "followup", jresp(200, self.public(m)), it)

    def _record_followup(self, request, kind, resp, it=None):
        self.interaction_responses.append({
            "interaction_id": it["id"] if it else None, "kind": kind,
            "message_id": request.match_info.get("message_id"), "body": request.get("body"),
            "status": resp.status, "time": time.time(),
            "elapsed": (time.monotonic() - it["created"]) if it else None})
        self.changed()
        return resp

    async def h_webhook_get(self, request):
        it, err = self.interaction_by_token(request)
        if err is not None:
            return err
        m, err = self._webhook_message(it, request.match_info["message_id"])
        return err if err is not None else jresp(200, self.public(m))

    async def h_webhook_edit(self, request):
        it, err = self.interaction_by_token(request)
        if err is not None:
            return self._record_followup(request, "edit", err)
        m, err = self._webhook_message(it, request.match_info["message_id"])
        if err is not None:
            return self._record_followup(request, "edit", err, it)
        body, files = request["body"], request["files"]
        if not isinstance(body, dict):
            return self._record_followup(request, "edit", jresp(
                400, {"code": 50109, "message": "The request body contains invalid JSON."}), it)
        bad = validate.message_body(body, nfiles=len(files), creating=False, allow_nonce=False)
        if bad:
            return self._record_followup(request, "edit", jresp(*bad), it)
        self.apply_edit(m, body, files, "webhook")
        m["flags"] = m.get("flags", 0) & ~LOADING
        await self.dispatch_message("MESSAGE_UPDATE", m)
        return self._record_followup(request, "edit", jresp(200, self.public(m)), it)

    async def h_webhook_delete(self, request):
        it, err = self.interaction_by_token(request)
        if err is not None:
            return err
        m, err = self._webhook_message(it, request.match_info["message_id"])
        if err is not None:
            return err
        await self.delete_message(m, "webhook")
        return web.Response(status=204)

    def rest_app(self):
        app = web.Application(middlewares=[self.rest_middleware], client_max_size=64 * 1024 * 1024)
        r = app.router
        a = API
        r.add_get(a + "/gateway/bot", self.h_gateway_bot)
        r.add_get(a + "/gateway", self.h_gateway)
        r.add_get(a + "/users/@me", self.h_me)
        r.add_post(a + "/users/@me/channels", self.h_open_dm)
        r.add_get(a + "/channels/{channel_id}", self.h_get_channel)
        r.add_post(a + "/channels/{channel_id}/messages", self.h_create_message)
        r.add_get(a + "/channels/{channel_id}/messages/{message_id}", self.h_get_message)
        r.add_patch(a + "/channels/{channel_id}/messages/{message_id}", self.h_edit_message)
        r.add_delete(a + "/channels/{channel_id}/messages/{message_id}", self.h_delete_message)
        r.add_post(a + "/channels/{channel_id}/typing", self.h_typing)
        r.add_put(a + "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self.h_reaction)
        r.add_post(a + "/interactions/{interaction_id}/{interaction_token}/callback", self.h_callback)
        r.add_post(a + "/webhooks/{application_id}/{interaction_token}", self.h_followup)
        w = a + "/webhooks/{application_id}/{interaction_token}/messages/{message_id}"
        r.add_get(w, self.h_webhook_get)
        r.add_patch(w, self.h_webhook_edit)
        r.add_delete(w, self.h_webhook_delete)
        for base in (a + "/applications/{application_id}/commands",
                     a + "/applications/{application_id}/guilds/{guild_id}/commands"):
            r.add_put(base, self.h_put_commands)
            r.add_get(base, self.h_get_commands)
        return app

    # ---- control API: acting as users ----------------------------------

    def pick_channel(self, b):
        if b.get("channel_id"):
            cid = str(b["channel_id"])
        else:
            which = b.get("channel", "guild")
            if which == "dm":
                cid = self._dm(str(b.get("user_id", world.USER_ID)))
            elif which == "thread":
                cid = self.guilds[0]["threads"][0]["id"]
            else:
                cid = self.guilds[0]["channels"][0]["id"]
        if cid not in self.channels:
            raise web.HTTPBadRequest(text="unknown channel %s" % cid)
        return cid

    def pick_user(self, b):
        uid = str(b.get("user_id", world.USER_ID))
        if uid not in self.users:
            self.users[uid] = {"id": uid, "username": b.get("username", "user" + uid[-4:]),
                               "discriminator": "0", "global_name": None, "avatar": None}
        return self.users[uid]

    async def c_message(self, request):
        b = await request.json()
        cid = self.pick_channel(b)
        user = self.pick_user(b)
        content = b.get("content", "")
        bot_mention = "<@%s>" % self.bot["id"]
        if b.get("mention_bot") and bot_mention not in content:
            content = "%s %s" % (bot_mention, content)
        body = {"content": content, "embeds": b.get("embeds", [])}
        if b.get("reference_id"):
            body["message_reference"] = {"message_id": str(b["reference_id"])}
        m = self.new_message(cid, user, body, b.get("attachments", []))
        m["_via"] = "user"
        if self.channels[cid]["guild_id"]:
            m["_roles"] = b.get("roles")
        await self.dispatch_message("MESSAGE_CREATE", m)
        return jresp(200, self.public(m))

    def new_interaction(self, itype, data, b, message=None):
        cid = self.pick_channel(b) if not message else message["channel_id"]
        user = self.pick_user(b)
        gid = self.channels[cid]["guild_id"]
        iid = self.ids.next()
        token = "aW50ZXJhY3Rpb246" + base64.urlsafe_b64encode(os.urandom(96)).decode().rstrip("=")
        d = {"id": iid, "application_id": self.cfg["application_id"], "type": itype, "data": data,
             "channel_id": cid, "channel": self.channels[cid]["obj"], "token": token, "version": 1,
             "locale": "en-US", "app_permissions": "1071698660929", "entitlements": [],
             "authorizing_integration_owners": {"0": gid} if gid else {"1": user["id"]},
             "context": 0 if gid else 1, "attachment_size_limit": 10485760}
        if gid:
            d["guild_id"] = gid
            d["guild_locale"] = "en-US"
            d["guild"] = {"id": gid, "locale": "en-US", "features": []}
            d["member"] = self.member(gid, user, b.get("roles"))
        else:
            d["user"] = user
        if message is not None:
            d["message"] = self.public(message)
        rec = {"id": iid, "token": token, "type": itype, "data": data, "channel_id": cid,
               "guild_id": gid, "user": user, "created": time.monotonic(), "acked": None,
               "response": None, "original": None, "followups": [],
               "message_id": message["id"] if message else None, "payload": d}
        self.interactions[iid] = rec
        self.by_token[token] = rec
        return rec, d, gid

    @staticmethod
    def options(opts):
        out = []
        items = opts.items() if isinstance(opts, dict) else [(o["name"], o) for o in opts or []]
        for name, o in items:
            o = o if isinstance(o, dict) else {"value": o}
            v = o.get("value")
            t = o.get("type") or (5 if isinstance(v, bool) else 4 if isinstance(v, int)
                                  else 10 if isinstance(v, float) else 3)
            opt = {"name": name, "type": t, "value": v}
            if o.get("focused"):
                opt["focused"] = True
            out.append(opt)
        return out

    async def c_slash(self, request, itype=2):
        b = await request.json()
        name = b["name"]
        cid = self.pick_channel(b)
        gid = self.channels[cid]["guild_id"]
        cmd = next((c for c in self.commands.get(gid, []) + self.commands.get("global", [])
                    if c["name"] == name), None)
        data = {"id": cmd["id"] if cmd else self.ids.next(), "name": name, "type": 1,
                "options": self.options(b.get("options"))}
        if gid:
            data["guild_id"] = gid
        rec, d, gid = self.new_interaction(itype, data, b)
        await self.gateway.dispatch("INTERACTION_CREATE", d, guild_id=gid)
        self.changed()
        return jresp(200, {"id": rec["id"], "token": rec["token"], "payload": d,
                           "registered": cmd is not None})

    async def c_autocomplete(self, request):
        return await self.c_slash(request, itype=4)

    async def c_click(self, request):
        b = await request.json()
        cid = b["custom_id"]
        cands = [m for ms in self.messages.values() for m in ms
                 if not m.get("_deleted") and m["author"]["id"] == self.bot["id"]]
        if b.get("message_id"):
            cands = [m for m in cands if m["id"] == str(b["message_id"])]
        found = None
        for m in reversed(cands):
            for row in m.get("components") or []:
                for c in row.get("components") or []:
                    if c.get("custom_id") == cid:
                        found = (m, c)
                        break
                if found:
                    break
            if found:
                break
        if not found:
            return jresp(404, {"error": "no bot message has a component with custom_id %r" % cid})
        m, comp = found
        if comp.get("disabled"):
            return jresp(409, {"error": "component %r is disabled" % cid})
        data = {"custom_id": cid, "component_type": comp.get("type", 2)}
        if comp.get("type") == 3:
            data["values"] = b.get("values", [])
        rec, d, gid = self.new_interaction(3, data, b, message=m)
        await self.gateway.dispatch("INTERACTION_CREATE", d, guild_id=gid)
        self.changed()
        return jresp(200, {"id": rec["id"], "token": rec["token"], "payload": d, "message_id": m["id"]})

    # ---- control API: gateway faults -------------------------------------

    def target_conns(self, b):
        live = self.gateway.live()
        if b.get("conn") is not None:
            return [c for c in live if c.id == b["conn"]]
        return live if b.get("all", True) else live[-1:]

    async def c_gw_close(self, request):
        b = await request.json()
        conns = self.target_conns(b)
        for c in conns:
            await self.gateway.close(c, int(b.get("code", 4000)), b.get("reason", ""))
        return jresp(200, {"closed": [c.id for c in conns]})

    async def c_gw_op(self, request):
        b = await request.json()
        op = int(b["op"])
        conns = self.target_conns(b)
        for c in conns:
            if op == 9:
                await self.gateway.invalid_session(c, bool(b.get("d", False)))
            elif op in (1, 7):
                await self.gateway.send(c, {"op": op, "s": None, "t": None, "d": None})
            else:
                await self.gateway.send(c, {"op": op, "s": None, "t": None, "d": b.get("d")})
        return jresp(200, {"sent": [c.id for c in conns]})

    async def c_gw_acks(self, request):
        b = await request.json()
        enabled = bool(b.get("enabled", True))
        self.gateway.acks_default = enabled if b.get("future", True) else self.gateway.acks_default
        for c in self.target_conns(b):
            c.acks = enabled
        self.changed()
        return jresp(200, {"enabled": enabled})

    async def c_gw_drop(self, request):
        b = await request.json() if request.can_read_body else {}
        conns = self.target_conns(b)
        for c in conns:
            self.gateway.drop(c)
        return jresp(200, {"dropped": [c.id for c in conns]})

    async def c_gw_dispatch(self, request):
        b = await request.json()
        n = await self.gateway.dispatch(b["t"], b.get("d") or {}, guild_id=b.get("guild_id"))
        return jresp(200, {"sessions": n})

    async def c_refuse(self, request):
        b = await request.json()
        secs = float(b.get("seconds", 1.0))
        what = b.get("what", "gateway")
        names = {"gateway": ["gateway", "resume"], "rest": ["rest"],
                 "all": ["gateway", "resume", "rest"]}[what]
        for name in names:
            runner, port, server = self.sites[name]
            if server is not None:
                server.close()
                self.sites[name] = (runner, port, None)
            self.refused[name] = time.monotonic() + secs
        if b.get("drop", True):
            if "gateway" in names:
                for c in self.gateway.live():
                    self.gateway.drop(c)
            if "rest" in names:  # keep-alive connections go down too, as in an outage
                runner = self.sites["rest"][0]
                for transport in list(runner.server._connections.values()):
                    transport.abort()
        asyncio.get_running_loop().call_later(secs, lambda: asyncio.ensure_future(self._reopen(names)))
        self.changed()
        return jresp(200, {"refusing": names, "seconds": secs})

    async def _reopen(self, names):
        for name in names:
            if time.monotonic() + 0.001 < self.refused.get(name, 0):
                continue
            runner, port, server = self.sites[name]
            if server is None:
                server = await asyncio.get_running_loop().create_server(
                    runner.server, "127.0.0.1", port, ssl=self.ssl if name != "control" else None,
                    reuse_address=True)
                self.sites[name] = (runner, port, server)
            self.refused.pop(name, None)
        self.changed()

    # ---- control API: REST faults and config -----------------------------

    async def c_fail(self, request):
        if request.method == "DELETE":
            self.failures.clear()
            return jresp(200, {"cleared": True})
        b = await request.json()
        rule = {"method": b.get("method"), "route": b.get("route"), "path": b.get("path"),
                "status": b.get("status", 500 if not b.get("delay") else None),
                "times": int(b.get("times", 1)), "when": b.get("when", "after" if b.get("delay") else "before"),
                "delay": float(b.get("delay", 0))}
        if rule["route"] and " " not in rule["route"]:
            return jresp(400, {"error": "route must look like 'POST /channels/{channel_id}/messages'"})
        for k in ("retry_after", "global", "scope", "body", "code"):
            if k in b:
                rule[k] = b[k]
        self.failures.append(rule)
        return jresp(200, rule)

    async def c_config(self, request):
        b = await request.json()
        for k, v in b.items():
            if k not in self.cfg:
                return jresp(400, {"error": "unknown option %s" % k})
            self.cfg[k] = v
        if "routes" in b or "rate_limit_scale" in b:
            self.buckets.clear()
        return jresp(200, {k: self.cfg[k] for k in b})

    # ---- control API: reading back ---------------------------------------

    async def c_state(self, request):
        return jresp(200, {"version": self.version, "rest": self.rest,
                           "gateway": self.gateway.counts(), "refused": list(self.refused),
                           "failures_pending": sum(f["times"] for f in self.failures if f["times"] > 0),
                           "messages": sum(len(v) for v in self.messages.values()),
                           "typing": len(self.typing), "edits": len(self.edits),
                           "deletions": len(self.deletions), "reactions": len(self.reactions),
                           "interaction_responses": len(self.interaction_responses),
                           "requests": len(self.requests)})

    async def c_wait(self, request):
        v = int(request.query.get("version", "0"))
        t = min(float(request.query.get("timeout", "1")), 30.0)
        return jresp(200, {"version": await self.wait_change(v, t)})

    async def c_world(self, request):
        g = self.guilds[0]
        return jresp(200, {"token": self.cfg["token"], "application_id": self.cfg["application_id"],
                           "bot_user": self.bot, "guild_id": g["id"],
                           "channel_id": g["channels"][0]["id"],
                           "thread_id": g["threads"][0]["id"] if g.get("threads") else None,
                           "dm_channel_id": self.dms.get(world.USER_ID), "user_id": world.USER_ID,
                           "other_user_id": world.OTHER_USER_ID, "role_id": world.ROLE_ID,
                           "users": list(self.users.values()), "guilds": self.guilds,
                           "urls": self.urls})

    def _msg_view(self, m):
        d = self.public(m)
        d["deleted"] = bool(m.get("_deleted"))
        d["history"] = m.get("_history", [])
        d["via"] = m.get("_via")
        d["from_bot"] = m["author"]["id"] == self.bot["id"]
        return d

    async def c_messages(self, request):
        q = request.query
        cids = [q["channel_id"]] if "channel_id" in q else list(self.messages)
        out = []
        for cid in cids:
            out.extend(self._msg_view(m) for m in self.messages.get(cid, []))
        author = q.get("author", "all")
        if author == "bot":
            out = [m for m in out if m["from_bot"]]
        elif author == "user":
            out = [m for m in out if not m["from_bot"]]
        if q.get("include_deleted", "true") == "false":
            out = [m for m in out if not m["deleted"]]
        if "channel_id" not in q:
            out.sort(key=lambda m: int(m["id"]))
        return jresp(200, out)

    def _list(self, attr):
        async def h(request):
            items = getattr(self, attr)
            since = int(request.query.get("since", "0"))
            return jresp(200, items[since:])
        return h

    async def c_requests(self, request):
        q = request.query
        out = self.requests[int(q.get("since", "0")):]
        if "route" in q:
            out = [r for r in out if r["route"] == q["route"]]
        if "method" in q:
            out = [r for r in out if r["method"] == q["method"].upper()]
        if "path" in q:
            out = [r for r in out if fnmatch.fnmatch(r["path"], q["path"])]
        return jresp(200, out)

    async def c_interactions(self, request):
        now = time.monotonic()
        return jresp(200, [dict({k: v for k, v in it.items() if k != "created"},
                                age=now - it["created"])
                           for it in self.interactions.values()])

    async def c_commands(self, request):
        return jresp(200, {"current": self.commands, "puts": self.command_puts})

    async def c_conns(self, request):
        return jresp(200, [c.info() for c in self.gateway.conns])

    async def c_frames(self, request):
        q = request.query
        out = self.gateway.frames[int(q.get("since", "0")):]
        if "op" in q:
            out = [f for f in out if f["op"] == int(q["op"])]
        if "conn" in q:
            out = [f for f in out if f["conn"] == int(q["conn"])]
        return jresp(200, out)

    async def c_sessions(self, request):
        return jresp(200, [{"id": s.id, "seq": s.seq, "shard": s.shard, "intents": s.intents,
                            "valid": s.valid, "identify": s.identify,
                            "conn": s.conn.id if s.conn else None,
                            "events": [p["t"] for _, p in s.events]}
                           for s in self.gateway.sessions.values()])

    async def c_file(self, request):
        data = self.files.get(request.match_info["aid"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    def control_app(self):
        app = web.Application()
        r = app.router
        r.add_get("/state", self.c_state)
        r.add_get("/wait", self.c_wait)
        r.add_get("/world", self.c_world)
        r.add_post("/message", self.c_message)
        r.add_post("/slash", self.c_slash)
        r.add_post("/autocomplete", self.c_autocomplete)
        r.add_post("/click", self.c_click)
        r.add_post("/gateway/close", self.c_gw_close)
        r.add_post("/gateway/op", self.c_gw_op)
        r.add_post("/gateway/acks", self.c_gw_acks)
        r.add_post("/gateway/drop", self.c_gw_drop)
        r.add_post("/gateway/dispatch", self.c_gw_dispatch)
        r.add_get("/gateway/connections", self.c_conns)
        r.add_get("/gateway/frames", self.c_frames)
        r.add_get("/gateway/sessions", self.c_sessions)
        r.add_post("/refuse", self.c_refuse)
        r.add_post("/rest/fail", self.c_fail)
        r.add_delete("/rest/fail", self.c_fail)
        r.add_post("/config", self.c_config)
        r.add_get("/messages", self.c_messages)
        r.add_get("/edits", self._list("edits"))
        r.add_get("/deletions", self._list("deletions"))
        r.add_get("/typing", self._list("typing"))
        r.add_get("/reactions", self._list("reactions"))
        r.add_get("/interaction_responses", self._list("interaction_responses"))
        r.add_get("/interactions", self.c_interactions)
        r.add_get("/commands", self.c_commands)
        r.add_get("/requests", self.c_requests)
        r.add_get("/files/{aid}/{name}", self.c_file)
        r.add_get("/files/{aid}", self.c_file)
        return app

    # ---- startup ---------------------------------------------------------

    def make_tls(self):
        d = self.state_dir
        ca_key, ca, key, csr, crt = (os.path.join(d, n) for n in
                                     ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
        ext = os.path.join(d, "server.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
        run("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
            "-subj", "/CN=fakediscord test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        run("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
        run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", crt, "-days", "2", "-extfile", ext)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(crt, key)
        self.ssl = ctx
        self.ca_file = ca

    async def start(self):
        if self.cfg["tls"]:
            self.make_tls()
        gw = web.Application()
        gw["kind"] = "gateway"
        gw.router.add_get("/{path:.*}", self.gateway.handler)
        rs = web.Application()
        rs["kind"] = "resume"
        rs.router.add_get("/{path:.*}", self.gateway.handler)
        apps = {"rest": self.rest_app(), "gateway": gw, "resume": rs, "control": self.control_app()}
        loop = asyncio.get_running_loop()
        for name, app in apps.items():
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            server = await loop.create_server(runner.server, "127.0.0.1", 0,
                                              ssl=self.ssl if name != "control" else None,
                                              reuse_address=True)
            port = server.sockets[0].getsockname()[1]
            self.sites[name] = (runner, port, server)
        http = "https" if self.ssl else "http"
        wsch = "wss" if self.ssl else "ws"
        p = {n: s[1] for n, s in self.sites.items()}
        self.urls = {
            "api_url": "%s://127.0.0.1:%d%s" % (http, p["rest"], API),
            "gateway_url": "%s://127.0.0.1:%d" % (wsch, p["gateway"]),
            "resume_gateway_url": "%s://127.0.0.1:%d" % (wsch, p["resume"]),
            "control_url": "http://127.0.0.1:%d" % p["control"],
            "ca_file": self.ca_file, "tls": bool(self.ssl), "pid": os.getpid(),
            "ports": p,
        }

    async def stop(self):
        for c in self.gateway.live():
            self.gateway.drop(c)
        for name, (runner, port, server) in self.sites.items():
            if server is not None:
                server.close()
            await runner.cleanup()


async def amain(args):
    scenario = json.loads(args.scenario) if args.scenario else {}
    if args.scenario_file:
        with open(args.scenario_file) as f:
            scenario.update(json.load(f))
    cfg = world.merge_scenario(scenario)
    own_dir = not args.state_dir
    state_dir = args.state_dir or tempfile.mkdtemp(prefix="fakediscord-")
    fake = Fake(cfg, state_dir)
    await fake.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.watch_stdin:
        def on_stdin():
            if not os.read(sys.stdin.fileno(), 4096):
                loop.remove_reader(sys.stdin.fileno())
                stop.set()
        loop.add_reader(sys.stdin.fileno(), on_stdin)
    sys.stdout.write(json.dumps(fake.urls) + "\n")
    sys.stdout.flush()
    log.info("listening: %s", fake.urls)
    try:
        await stop.wait()
        await fake.stop()
    finally:
        if own_dir:
            shutil.rmtree(state_dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", help="scenario options as a JSON object")
    ap.add_argument("--scenario-file", help="scenario options from a JSON file")
    ap.add_argument("--state-dir", help="where to write the test CA and certificates")
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches EOF")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
