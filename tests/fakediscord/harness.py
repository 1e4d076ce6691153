"""Start, drive and read back the fake Discord from a test (standard library only).

    from fakediscord.harness import FakeDiscord

    with FakeDiscord({"heartbeat_interval": 300}, tls=True) as fake:
        cfg = fake.settings()           # token, api_url, gateway_url, application_id, ca_file
        ...start the bot...
        fake.wait_until(lambda: fake.state()["gateway"]["identify"] == 1, what="identify")
        fake.post_message("hello", mention_bot=True)
        msg = fake.wait_for_bot_message(fake.channel_id)

The fake runs in a subprocess (server.py) on free loopback ports; stop() (or leaving the
`with` block) terminates it and removes its temporary directory. The subprocess also exits
when this process dies (it watches its stdin), so no process is left behind.
"""

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "server.py")
PYTHON = "/usr/bin/python3"


class FakeError(Exception):
    pass


class FakeDiscord:
    def __init__(self, scenario=None, tls=False, verbose=False, start_timeout=15.0):
        self.scenario = dict(scenario or {})
        if tls:
            self.scenario["tls"] = True
        self.verbose = verbose
        self.start_timeout = start_timeout
        self.proc = None
        self.dir = None
        self.urls = {}
        self.world = {}

    # ---- lifecycle -------------------------------------------------------

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="fakediscord-")
        self.log_path = os.path.join(self.dir, "server.log")
        cmd = [PYTHON, SERVER, "--scenario", json.dumps(self.scenario), "--state-dir", self.dir,
               "--watch-stdin"]
        if self.verbose:
            cmd.append("-v")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        deadline = time.monotonic() + self.start_timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise FakeError("fake Discord did not start: %s" % self._tail())
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                ch = os.read(self.proc.stdout.fileno(), 1)
                if not ch:
                    continue
                line += ch
        self.urls = json.loads(line)
        self.world = self.get("/world")
        return self

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                if f:
                    f.close()
            self._log.close()
            self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def log(self):
        """The fake's own log (stderr); run with verbose=True for per-connection detail."""
        return self._tail(1 << 20)

    # ---- URLs and identity -----------------------------------------------

    api_url = property(lambda self: self.urls["api_url"])                  # .../api/v10
    gateway_url = property(lambda self: self.urls["gateway_url"])          # no query string
    resume_gateway_url = property(lambda self: self.urls["resume_gateway_url"])
    control_url = property(lambda self: self.urls["control_url"])
    ca_file = property(lambda self: self.urls["ca_file"])                  # None without TLS
    token = property(lambda self: self.world["token"])
    application_id = property(lambda self: self.world["application_id"])
    bot_id = property(lambda self: self.world["bot_user"]["id"])
    guild_id = property(lambda self: self.world["guild_id"])
    channel_id = property(lambda self: self.world["channel_id"])
    thread_id = property(lambda self: self.world["thread_id"])
    dm_channel_id = property(lambda self: self.world["dm_channel_id"])
    user_id = property(lambda self: self.world["user_id"])
    other_user_id = property(lambda self: self.world["other_user_id"])
    role_id = property(lambda self: self.world["role_id"])

    def settings(self):
        """What a bot needs to talk to this fake, in one dict (map it onto the bot's config)."""
        return {"token": self.token, "api_url": self.api_url, "gateway_url": self.gateway_url,
                "application_id": self.application_id, "ca_file": self.ca_file}

    # ---- raw control calls -----------------------------------------------

    def _call(self, method, path, body=None, params=None, timeout=35):
        url = self.control_url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise FakeError("%s %s -> %d %s" % (method, path, e.code, e.read().decode()))
        return json.loads(raw) if raw else None

    def get(self, _path, **params):
        return self._call("GET", _path, params=params)

    def post(self, path, body=None):
        return self._call("POST", path, body if body is not None else {})

    # ---- waiting -----------------------------------------------------------

    def version(self):
        return self.get("/state")["version"]

    def wait_until(self, pred, timeout=10.0, what="condition"):
        """Re-evaluates pred() each time the fake's state changes (long-poll, no blind sleeps),
        at least every 0.25 s; returns its first truthy value or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.version()
            r = pred()
            if r:
                return r
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
            self.get("/wait", version=v, timeout=min(left, 0.25))

    def wait_ready(self, identifies=1, timeout=10.0):
        """Until `identifies` Identify payloads were accepted and a connection is live and
        identified; returns that connection's info."""
        def check():
            if self.state()["gateway"]["identify"] < identifies:
                return None
            live = [c for c in self.connections() if c["closed"] is None and c["identified"]]
            return live[-1] if live else None
        return self.wait_until(check, timeout, "READY #%d" % identifies)

    def wait_resumed(self, resumes=1, timeout=10.0):
        """Until `resumes` Resumes succeeded (RESUMED sent)."""
        return self.wait_until(lambda: self.state()["gateway"]["resumed"] >= resumes, timeout,
                               "RESUMED #%d" % resumes)

    def wait_connections(self, count, timeout=10.0):
        """Until `count` gateway connections were opened in total; returns their infos."""
        def check():
            conns = self.connections()
            return conns if len(conns) >= count else None
        return self.wait_until(check, timeout, "%d gateway connections" % count)

    def wait_for_bot_message(self, channel_id=None, pred=None, timeout=10.0, count=1):
        """The count-th message the bot posted in channel_id (matching pred) once it exists."""
        def check():
            ms = [m for m in self.messages(channel_id, author="bot") if pred is None or pred(m)]
            return ms[count - 1] if len(ms) >= count else None
        return self.wait_until(check, timeout, "bot message in %s" % (channel_id or "any channel"))

    # ---- acting as users ---------------------------------------------------

    def post_message(self, content, channel=None, channel_id=None, user_id=None, roles=None,
                     mention_bot=False, reference_id=None, **extra):
        """A user posts a message. channel: "guild" (default), "thread" or "dm"."""
        body = dict(content=content, channel=channel or "guild", channel_id=channel_id,
                    user_id=user_id, roles=roles, mention_bot=mention_bot,
                    reference_id=reference_id, **extra)
        return self.post("/message", {k: v for k, v in body.items() if v is not None})

    def slash(self, name, options=None, channel=None, channel_id=None, user_id=None, roles=None):
        """A user runs /name. options: {"prompt": "hi"} or [{"name", "value", "type"}].
        Returns {"id", "token", "payload", "registered"}."""
        body = dict(name=name, options=options or [], channel=channel or "guild",
                    channel_id=channel_id, user_id=user_id, roles=roles)
        return self.post("/slash", {k: v for k, v in body.items() if v is not None})

    def autocomplete(self, name, options, **kw):
        return self.post("/autocomplete", dict(name=name, options=options, **kw))

    def click(self, custom_id, message_id=None, user_id=None, roles=None):
        """A user clicks the button custom_id on the bot's latest message that has it."""
        body = dict(custom_id=custom_id, message_id=message_id, user_id=user_id, roles=roles)
        return self.post("/click", {k: v for k, v in body.items() if v is not None})

    # ---- gateway faults ----------------------------------------------------

    def close_gateway(self, code=4000, reason="", conn=None):
        return self.post("/gateway/close", {"code": code, "reason": reason, "conn": conn})

    def send_op(self, op, d=None, conn=None):
        """op 1 (heartbeat request), 7 (reconnect) or 9 (invalid session, d=True|False)."""
        return self.post("/gateway/op", {"op": op, "d": d, "conn": conn})

    def set_heartbeat_acks(self, enabled):
        """False: live and future connections stop getting op 11 ACKs."""
        return self.post("/gateway/acks", {"enabled": enabled})

    def drop_gateway(self, conn=None):
        """Abort the TCP connection(s) without a close frame."""
        return self.post("/gateway/drop", {"conn": conn})

    def dispatch(self, t, d, guild_id=None):
        return self.post("/gateway/dispatch", {"t": t, "d": d, "guild_id": guild_id})

    def refuse(self, seconds, what="gateway", drop=None):
        """Stop listening for `seconds` (connections refused). what: gateway|rest|all.
        Open connections of those ports are aborted too unless drop=False."""
        body = {"seconds": seconds, "what": what}
        if drop is not None:
            body["drop"] = drop
        return self.post("/refuse", body)

    # ---- REST faults and config --------------------------------------------

    def fail(self, route=None, status=500, times=1, path=None, method=None, **kw):
        """Make a route answer `status` `times` times. route: "POST /channels/{channel_id}/messages".
        status 429 takes retry_after (float s), global, scope. when="after" processes the
        request first; delay=s answers late (after processing) to provoke a client timeout."""
        body = dict(route=route, status=status, times=times, path=path, method=method, **kw)
        return self.post("/rest/fail", {k: v for k, v in body.items() if v is not None})

    def clear_failures(self):
        return self._call("DELETE", "/rest/fail")

    def configure(self, **options):
        """Change scenario options while running (e.g. interaction_callback_timeout=0.5)."""
        return self.post("/config", options)

    # ---- reading back -------------------------------------------------------

    def state(self):
        """{"version", "rest": counters, "gateway": counters, ...}."""
        return self.get("/state")

    def messages(self, channel_id=None, author="all", include_deleted=True):
        """Messages in posting order; each has deleted, history (earlier versions), via, from_bot."""
        return self.get("/messages", channel_id=channel_id, author=author,
                        include_deleted="true" if include_deleted else "false")

    def bot_messages(self, channel_id=None):
        return self.messages(channel_id, author="bot")

    def edits(self):
        return self.get("/edits")

    def deletions(self):
        return self.get("/deletions")

    def typing(self):
        return self.get("/typing")

    def reactions(self):
        return self.get("/reactions")

    def interaction_responses(self):
        return self.get("/interaction_responses")

    def interactions(self):
        return self.get("/interactions")

    def commands(self):
        return self.get("/commands")

    def requests(self, route=None, method=None, path=None, since=0):
        return self.get("/requests", route=route, method=method, path=path, since=since)

    def connections(self):
        return self.get("/gateway/connections")

    def frames(self, op=None, conn=None, since=0):
        return self.get("/gateway/frames", op=op, conn=conn, since=since)

    def sessions(self):
        return self.get("/gateway/sessions")

    def file(self, attachment_id):
        with urllib.request.urlopen("%s/files/%s" % (self.control_url, attachment_id)) as r:
            return r.read()
