"""The gateway end to end: core.gateway (the real C transport and state machine, loaded as
build/core.so by lua5.4 through tests/e2e/gateway_driver.lua) against the fake Discord.

Each scenario asserts what a user would notice: a message posted during the fault still
arrives exactly once, the bot reconnects within its bounds, a fatal close code ends the
process with the operator's fix instead of a reconnect loop."""
import os
import subprocess
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("CC_BUILD_DIR", os.path.join(REPO, "build"))
DRIVER = os.path.join(HERE, "gateway_driver.lua")


class Driver:
    """The driver process; its stdout lines are events ("EVENT name seq id")."""

    def __init__(self, fake, **env):
        s = fake.settings()
        full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
                "LUA_CPATH": BUILD + "/?.so;;", "LUA_PATH": REPO + "/lua/?.lua;;",
                "GW_URL": s["gateway_url"], "GW_TOKEN": s["token"], "GW_CA_FILE": s["ca_file"] or ""}
        full.update({k: str(v) for k, v in env.items()})
        self.proc = subprocess.Popen(["lua5.4", DRIVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=full, cwd=REPO)
        self.lines, self.err = [], []
        self.cond = threading.Condition()
        for stream, sink in ((self.proc.stdout, self.lines), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream, sink):
        for raw in iter(stream.readline, b""):
            with self.cond:
                sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()

    def events(self, name=None):
        with self.cond:
            out = [ln.split(" ", 3) for ln in self.lines if ln.startswith("EVENT ")]
        return [e[1:] for e in out if name is None or e[1] == name]

    def wait(self, pred, timeout=10, what="condition"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                r = pred()
                if r:
                    return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %ss waiting for %s\n--- stdout ---\n%s\n--- stderr ---\n%s"
                                         % (timeout, what, "\n".join(self.lines), "\n".join(self.err[-60:])))
                self.cond.wait(min(left, 0.1))

    def wait_event(self, name, count=1, timeout=10):
        return self.wait(lambda: len(self.events(name)) >= count, timeout, "%d x %s" % (count, name))

    def stderr(self):
        with self.cond:
            return "\n".join(self.err)

    def exit_code(self, timeout=10):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("driver still running after %ss\n%s" % (timeout, self.stderr()[-4000:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def drivers():
    started = []

    def start(fake, **env):
        d = Driver(fake, **env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
        print("---- driver stderr ----")
        print(d.stderr()[-8000:])


def ready(fake, bot, sessions=1):
    bot.wait_event("READY", sessions)
    bot.wait_event("GUILD_CREATE", sessions)


def message_ids(bot):
    return [e[2] for e in bot.events("MESSAGE_CREATE")]


def post(fake, text):
    return fake.post_message(text, mention_bot=True)["id"]


def exactly_once(bot, ids, timeout=10):
    bot.wait(lambda: all(i in message_ids(bot) for i in ids), timeout, "messages %s" % ids)
    seen = message_ids(bot)
    for i in ids:
        assert seen.count(i) == 1, "message %s dispatched %d times" % (i, seen.count(i))


def resumed(fake, count=1):
    fake.wait_until(lambda: fake.state()["gateway"]["resumed"] >= count, what="resumed")


# ---- reconnect and resume ------------------------------------------------------------

@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000})
def test_server_close_4000_resumes_and_replays_missed_messages(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake)
    ready(fake, bot)
    before = post(fake, "before")
    fake.close_gateway(4000)
    during = post(fake, "during the outage")  # missed by the dead connection: replayed
    resumed(fake)
    after = post(fake, "after")
    exactly_once(bot, [before, during, after])
    g = fake.state()["gateway"]
    assert g["identify"] == 1 and g["resume"] == 1 and g["resume_wrong_url"] == 0
    conns = fake.connections()
    assert conns[1]["kind"] == "resume", conns  # READY's resume_gateway_url
    assert conns[1]["query"] == conns[0]["query"], conns  # with the same query string
    assert len(bot.events("READY")) == 1 and len(bot.events("RESUMED")) == 1


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000})
def test_abrupt_tcp_drop_resumes(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake)
    ready(fake, bot)
    fake.drop_gateway()
    during = post(fake, "while dropped")
    resumed(fake)
    exactly_once(bot, [during])
    assert fake.state()["gateway"]["identify"] == 1


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000})
def test_op7_reconnects_and_resumes(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake)
    ready(fake, bot)
    fake.send_op(7)
    during = post(fake, "after op 7")
    resumed(fake)
    exactly_once(bot, [during])
    first = fake.connections()[0]
    assert first["closed_by"] == "client" and first["close_code"] not in (1000, 1001), first


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000, "op7_before_hello": 1})
def test_op7_before_hello_still_connects(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake)
    ready(fake, bot)
    assert len(fake.connections()) == 2
    exactly_once(bot, [post(fake, "hi")])


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000})
def test_op9_resumable_resumes(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake)
    ready(fake, bot)
    fake.send_op(9, True)
    resumed(fake)
    exactly_once(bot, [post(fake, "after op 9 true")])
    assert fake.state()["gateway"]["identify"] == 1


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000})
def test_op9_not_resumable_waits_then_identifies_on_the_original_url(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake)
    ready(fake, bot)
    fake.send_op(9, False)
    fake.wait_until(lambda: fake.state()["gateway"]["identify"] >= 2, timeout=12, what="new identify")
    conns = fake.connections()
    gap = conns[1]["opened"] - conns[0]["closed"]
    assert 0.9 <= gap <= 5.5, "reconnected %.2fs after op 9 false (want 1-5 s)" % gap
    assert conns[1]["kind"] == "gateway", conns  # the original URL, not the resume one
    assert fake.state()["gateway"]["resume"] == 0
    bot.wait_event("READY", 2)
    exactly_once(bot, [post(fake, "new session")])


@pytest.mark.parametrize("code", [4007, 4009])
@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000})
def test_invalid_seq_and_session_timeout_start_a_new_session(fake_discord, drivers, code):
    fake = fake_discord
    bot = drivers(fake)
    ready(fake, bot)
    fake.close_gateway(code)
    bot.wait_event("READY", 2, timeout=12)  # identify waits out the 5 s identify window
    g = fake.state()["gateway"]
    assert g["identify"] == 2 and g["resume"] == 0 and g["identify_too_fast"] == 0
    exactly_once(bot, [post(fake, "new session")])


# ---- heartbeats ---------------------------------------------------------------------

@pytest.mark.fake_discord(scenario={"heartbeat_interval": 500, "heartbeat_timeout_code": 0})
def test_withheld_acks_are_a_zombie_detected_within_two_intervals(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake)
    ready(fake, bot)
    fake.wait_until(lambda: fake.state()["gateway"]["heartbeat_acks"] >= 1, what="first ack")
    t0 = time.monotonic()
    fake.set_heartbeat_acks(False)
    fake.wait_until(lambda: fake.connections()[0]["closed"] is not None, timeout=5, what="zombie close")
    elapsed = time.monotonic() - t0
    first = fake.connections()[0]
    assert first["closed_by"] == "client" and first["close_code"] not in (1000, 1001), first
    assert elapsed <= 2 * 0.5 + 0.5, "zombie detected after %.2fs" % elapsed
    fake.set_heartbeat_acks(True)
    resumed(fake)
    exactly_once(bot, [post(fake, "after the zombie")])
    assert "zombie" in bot.stderr()


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 41250})
def test_server_heartbeat_request_is_answered_at_once(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake)
    ready(fake, bot)
    before = fake.state()["gateway"]["heartbeats"]
    t0 = time.monotonic()
    fake.send_op(1)
    fake.wait_until(lambda: fake.state()["gateway"]["heartbeats"] > before, timeout=3, what="heartbeat")
    assert time.monotonic() - t0 < 2


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000, "send_hello": False})
def test_missing_hello_times_out_and_reconnects(fake_discord, drivers):
    fake = fake_discord
    drivers(fake, GW_HELLO_TIMEOUT=1)
    fake.wait_until(lambda: len(fake.connections()) >= 2, timeout=6, what="reconnect after no Hello")


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000, "heartbeat_timeout_code": 0})
def test_a_burst_of_payloads_stays_under_the_send_limit_and_heartbeats_go_on(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake, GW_SEND_BURST=200)
    ready(fake, bot)
    fake.wait_until(lambda: len(fake.frames(op=3)) > 0, what="the first presence updates")
    acks = fake.state()["gateway"]["heartbeat_acks"]
    fake.wait_until(lambda: fake.state()["gateway"]["heartbeat_acks"] >= acks + 3, timeout=6,
                    what="heartbeats after the burst")
    sent = len(fake.frames(op=3))
    # 120 per minute, minus one Identify, minus the slots kept for heartbeats
    # (one a second here: half the window is reserved)
    assert 0 < sent <= 120 - 60, sent
    conn = fake.connections()[0]
    assert conn["closed"] is None, conn  # never closed with 4008
    assert not [ln for ln in bot.lines if ln.startswith("SEND-FAILED")]


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000, "send_ready": False})
def test_missing_ready_times_out_and_identifies_again(fake_discord, drivers):
    fake = fake_discord
    drivers(fake, GW_READY_TIMEOUT=1)
    fake.wait_until(lambda: fake.state()["gateway"]["identify"] >= 2, timeout=10, what="a second identify")
    conns = fake.connections()
    assert conns[0]["closed_by"] == "client" and conns[0]["close_code"] not in (1000, 1001), conns[0]
    assert fake.state()["gateway"]["identify_too_fast"] == 0


# ---- outages ------------------------------------------------------------------------

@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000})
def test_server_down_20s_reconnects_within_the_backoff_bound(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake, GW_BACKOFF_MAX=8)
    ready(fake, bot)
    t0 = time.monotonic()
    fake.refuse(20)  # drops the live connection and refuses new ones
    during = post(fake, "while the gateway is down")
    fake.wait_until(lambda: len(fake.connections()) >= 2, timeout=40, what="reconnection")
    back = time.monotonic() - t0
    # attempts at 0, 1, 2, 4, 8, 8... s apart (+-10%): the first after 20 s comes <= 8.8 s later
    assert 20 <= back <= 20 + 8.8 + 1.5, "reconnected %.1fs after the outage began" % back
    resumed(fake)
    exactly_once(bot, [during])


# ---- fatal close codes --------------------------------------------------------------

@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000})
def test_4004_bad_token_exits_1_with_the_fix_and_no_reconnect_loop(fake_discord, drivers):
    fake = fake_discord
    t0 = time.monotonic()
    bot = drivers(fake, GW_TOKEN="not-the-token")
    assert bot.exit_code(timeout=10) == 1
    assert time.monotonic() - t0 < 5
    fatal = [ln for ln in bot.lines if ln.startswith("FATAL 4004")]
    assert fatal and "token" in fatal[0], bot.lines
    assert "4004" in bot.stderr() and "authentication failed" in bot.stderr()
    assert len(fake.connections()) == 1  # one attempt, no reconnect loop


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000, "allowed_intents": []})
def test_4014_disallowed_intents_exits_1_telling_to_enable_message_content(fake_discord, drivers):
    fake = fake_discord
    t0 = time.monotonic()
    bot = drivers(fake, GW_INTENTS=(1 << 0) | (1 << 9) | (1 << 12) | (1 << 15))
    assert bot.exit_code(timeout=10) == 1
    assert time.monotonic() - t0 < 5
    fatal = [ln for ln in bot.lines if ln.startswith("FATAL 4014")]
    assert fatal and "MESSAGE_CONTENT" in fatal[0] and "Developer Portal" in fatal[0], bot.lines
    assert len(fake.connections()) == 1


# ---- compression and TLS ------------------------------------------------------------

@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000, "fragment_size": 4096,
                                    "guild_create_members": 20000})
def test_zlib_stream_with_fragments_and_a_multi_megabyte_guild_create(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake, GW_COMPRESS=1)
    ready(fake, bot)
    gc = bot.events("GUILD_CREATE")[0]
    assert int(gc[2].split(":")[1]) >= 20000  # every member decoded (about 6.6 MB of JSON)
    conn = fake.connections()[0]
    assert conn["zlib"] and fake.state()["gateway"]["fragments_sent"] > 10
    exactly_once(bot, [post(fake, "compressed %d" % i) for i in range(5)])
    fake.close_gateway(4000)  # a new connection starts a new zlib context
    resumed(fake)
    exactly_once(bot, [post(fake, "after reconnect")])


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000}, tls=True)
def test_tls_verified_with_the_test_ca(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake, GW_COMPRESS=1)
    ready(fake, bot)
    exactly_once(bot, [post(fake, "over TLS")])


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000}, tls=True)
def test_tls_refuses_a_server_it_cannot_verify(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake, GW_CA_FILE="/dev/null", GW_BACKOFF_MAX=1)
    bot.wait(lambda: "connection failed" in bot.stderr(), timeout=10, what="a refused handshake")
    assert fake.state()["gateway"]["identify"] == 0
    assert not bot.events("READY")


# ---- leaving --------------------------------------------------------------------------

@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000})
def test_clean_stop_closes_with_1000(fake_discord, drivers):
    fake = fake_discord
    bot = drivers(fake, GW_STOP_AFTER=1)
    ready(fake, bot)
    post(fake, "last one")
    assert bot.exit_code(timeout=10) == 0
    conn = fake.connections()[0]
    assert conn["closed_by"] == "client" and conn["close_code"] == 1000, conn
