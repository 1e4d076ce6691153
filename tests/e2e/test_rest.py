"""core.discord.request end to end, against the fake Discord enforcing its rate limits.

A Lua driver (rest_driver.lua) runs under lua5.4 with the built core.so and sends
messages; the fake records what arrived. Every test checks what a user of the bot would
notice: messages delivered once, in order, and no request wasted on an exhausted limit.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from fakediscord.harness import FakeDiscord  # noqa: E402

BUILD = os.environ.get("CC_BUILD_DIR", os.path.join(ROOT, "build"))
DRIVER = os.path.join(HERE, "rest_driver.lua")
ROUTE = "POST /channels/{channel_id}/messages"
FAST = {"retry_base": 0.05, "retry_max": 0.2}


def run_lines(fake, options, ca_file=None, timeout=60):
    env = dict(os.environ)
    env.update({
        "DISCORD_API_URL": fake.api_url, "DISCORD_TOKEN": fake.token,
        "DISCORD_CA_FILE": ca_file if ca_file is not None else (fake.ca_file or ""),
        "LUA_PATH": "%s/lua/?.lua;%s/lua/?/init.lua;;" % (ROOT, ROOT),
        "LUA_CPATH": "%s/?.so;;" % BUILD,
    })
    p = subprocess.run(["lua5.4", DRIVER, json.dumps(options)], env=env, capture_output=True,
                       timeout=timeout, text=True)
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()], p.stderr


def run_driver(fake, options, ca_file=None, timeout=60):
    lines, stderr = run_lines(fake, options, ca_file, timeout)
    results = [r for r in lines if r.get("kind") is None]
    stats = [r for r in lines if r.get("kind") == "stats"]
    return results, stats[0], stderr


def make_channels(n):
    base = 1300000000000100000
    return [{"id": str(base + i), "type": 0, "name": "c%d" % i, "position": i + 1,
             "parent_id": None, "topic": None, "nsfw": False, "permission_overwrites": []}
            for i in range(n)]


def scenario_with_channels(n, **extra):
    from fakediscord import world
    guilds = world.default_guilds()
    guilds[0]["channels"] = guilds[0].get("channels", []) + make_channels(n)
    s = {"guilds": guilds}
    s.update(extra)
    return s


def delivered(fake, channel_id):
    return [m["content"] for m in fake.bot_messages(channel_id) if not m.get("deleted")]


def test_200_messages_one_channel_in_order_without_hitting_limits():
    with FakeDiscord({"rate_limit_scale": 0.02}) as fake:
        cid = fake.channel_id
        results, stats, err = run_driver(fake, {"channels": [cid], "per_channel": 200})
        assert len(results) == 200 and all(r["ok"] for r in results), err
        want = ["message %s #%d" % (cid, i) for i in range(1, 201)]
        assert delivered(fake, cid) == want
        rest = fake.state()["rest"]
        assert rest["exhausted_hits"] == 0, rest
        assert rest["rate_limited"] == 0 and rest["global_rate_limited"] == 0
        assert stats["retries_429"] == 0
        # the bucket (5 per 0.1 s here) was the limit, not one request at a time
        spent = results[-1]["done_at"] - results[0]["sent_at"]
        assert 3.5 < spent < 15, spent


def test_200_messages_over_20_channels_respect_the_global_limit():
    scen = scenario_with_channels(20, rate_limit_scale=0.02)
    with FakeDiscord(scen) as fake:
        ids = [c["id"] for c in make_channels(20)]
        results, stats, err = run_driver(fake, {"channels": ids, "per_channel": 10})
        assert len(results) == 200 and all(r["ok"] for r in results), err
        for cid in ids:
            assert delivered(fake, cid) == ["message %s #%d" % (cid, i) for i in range(1, 11)]
        rest = fake.state()["rest"]
        assert rest["exhausted_hits"] == 0, rest
        assert rest["global_rate_limited"] == 0
        # 200 requests at 50/s cannot take much less than 3 s
        spent = max(r["done_at"] for r in results) - min(r["sent_at"] for r in results)
        assert spent > 2.9, spent


def test_429_storm_waits_retry_after_and_loses_nothing():
    with FakeDiscord({}) as fake:
        cid = fake.channel_id
        fake.fail(route=ROUTE, status=429, times=6, retry_after=0.3)
        results, stats, err = run_driver(fake, {"channels": [cid], "per_channel": 3,
                                                "configure": FAST})
        assert all(r["ok"] for r in results), err
        assert delivered(fake, cid) == ["message %s #%d" % (cid, i) for i in range(1, 4)]
        rest = fake.state()["rest"]
        assert rest["early_retries"] == 0 and rest["exhausted_hits"] == 0, rest
        assert stats["retries_429"] == 6
        reqs = fake.requests(route=ROUTE)
        times = [r["time"] for r in reqs]
        for a, b, r in zip(times, times[1:], reqs):
            if r["status"] == 429:
                assert b - a >= 0.29, (b - a)   # seconds, not milliseconds
        assert results[0]["attempts"] == 7  # 429s do not use up the 3 retries


def test_global_429_pauses_every_route():
    scen = scenario_with_channels(2)
    with FakeDiscord(scen) as fake:
        a, b = [c["id"] for c in make_channels(2)]
        fake.fail(route=ROUTE, status=429, times=1, retry_after=0.4, path="*/%s/*" % a,
                  **{"global": True})
        results, stats, err = run_driver(fake, {"channels": [a, b], "per_channel": 6})
        assert all(r["ok"] for r in results), err
        assert delivered(fake, a) == ["message %s #%d" % (a, i) for i in range(1, 7)]
        assert delivered(fake, b) == ["message %s #%d" % (b, i) for i in range(1, 7)]
        reqs = fake.requests()
        t429 = [r["time"] for r in reqs if r["status"] == 429 and r["injected"]]
        assert len(t429) == 1
        during = [r for r in reqs if t429[0] + 0.05 < r["time"] < t429[0] + 0.38]
        assert during == [], during
        assert stats["retries_429"] >= 1


def test_502_three_times_then_200_posts_once():
    with FakeDiscord({}) as fake:
        cid = fake.channel_id
        fake.fail(route=ROUTE, status=502, times=3)
        results, stats, err = run_driver(fake, {"channels": [cid], "per_channel": 1,
                                                "configure": FAST})
        assert results[0]["ok"], results
        assert results[0]["attempts"] == 4
        assert delivered(fake, cid) == ["message %s #1" % cid]
        assert [r["status"] for r in fake.requests(route=ROUTE)] == [502, 502, 502, 200]


def test_502_forever_gives_up_after_the_retries():
    with FakeDiscord({}) as fake:
        cid = fake.channel_id
        fake.fail(route=ROUTE, status=502, times=10)
        results, _, _ = run_driver(fake, {"channels": [cid], "per_channel": 1,
                                          "configure": FAST})
        assert not results[0]["ok"] and results[0]["status"] == 502
        assert results[0]["err"].startswith("discord 502")
        assert len(fake.requests(route=ROUTE)) == 4


def test_timeout_after_the_create_does_not_post_twice():
    with FakeDiscord({}) as fake:
        cid = fake.channel_id
        fake.fail(route=ROUTE, times=1, delay=1.5)   # processed, answered late
        cfg = dict(FAST, timeout=0.5)
        results, stats, err = run_driver(fake, {"channels": [cid], "per_channel": 1,
                                                "configure": cfg})
        assert results[0]["ok"], (results, err)
        assert results[0]["attempts"] == 2
        assert delivered(fake, cid) == ["message %s #1" % cid]
        assert fake.state()["rest"]["nonce_dedup"] == 1
        bodies = [r["body"] for r in fake.requests(route=ROUTE)]
        assert bodies[0]["nonce"] == bodies[1]["nonce"] and bodies[0]["enforce_nonce"] is True


def test_400_nested_error_is_readable():
    with FakeDiscord({}) as fake:
        cid = fake.channel_id
        results, _, _ = run_driver(fake, {"channels": [cid], "per_channel": 1,
                                          "contents": ["x" * 2001]})
        r = results[0]
        assert not r["ok"] and r["status"] == 400
        assert "content: Must be 2000 or fewer in length." in r["err"], r["err"]
        assert r["errors"] == ["content: Must be 2000 or fewer in length."]
        assert delivered(fake, cid) == []


def test_tls_with_the_test_ca_and_a_wrong_ca_refused():
    with FakeDiscord({}, tls=True) as fake:
        assert fake.api_url.startswith("https://")
        cid = fake.channel_id
        results, _, err = run_driver(fake, {"channels": [cid], "per_channel": 2})
        assert all(r["ok"] for r in results), err
        # a CA that did not sign the fake's certificate: refused, not retried
        with tempfile.TemporaryDirectory() as d:
            key, ca = os.path.join(d, "k.pem"), os.path.join(d, "ca.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", key, "-out", ca, "-days", "1", "-subj", "/CN=wrong"],
                           check=True, capture_output=True)
            before = fake.state()["rest"]["requests"]
            t0 = time.monotonic()
            results, stats, _ = run_driver(fake, {"channels": [cid], "per_channel": 1},
                                           ca_file=ca)
            assert not results[0]["ok"]
            assert results[0]["err"].startswith("tls:"), results[0]["err"]
            assert stats["sent"] == 1 and stats["retries_other"] == 0
            assert time.monotonic() - t0 < 10
            assert fake.state()["rest"]["requests"] == before
        assert len(delivered(fake, cid)) == 2


def test_401_is_reported_distinctly_and_not_retried():
    with FakeDiscord({}) as fake:
        cid = fake.channel_id
        results, _, err = run_driver(fake, {"channels": [cid], "per_channel": 3,
                                            "configure": {"token": "not-the-token-x1"}})
        assert [r["ok"] for r in results] == [False, False, False]
        assert all(r["err"].startswith("unauthorized") for r in results), results
        assert len(fake.requests(route=ROUTE)) == 1   # the later ones never left
        assert "not-the-token-x1" not in err
        assert "401" in err


def test_files_go_as_multipart_and_the_reason_url_encoded():
    with FakeDiscord({}) as fake:
        cid = fake.channel_id
        data = "line one\nline two \u00e9\n" * 100
        results, _, err = run_driver(fake, {
            "channels": [cid], "per_channel": 1,
            "files": [{"name": "out put.txt", "data": data, "content_type": "text/plain"},
                      {"name": "b.bin", "data": "\u0001\u0002"}],
            "reason": "clean-up: caf\u00e9 & co"})
        assert results[0]["ok"], (results, err)
        msg = fake.bot_messages(cid)[0]
        assert [a["filename"] for a in msg["attachments"]] == ["out put.txt", "b.bin"]
        assert fake.file(msg["attachments"][0]["id"]) == data.encode()
        req = fake.requests(route=ROUTE)[0]
        names = [p["name"] for p in req["multipart"]]
        assert names == ["payload_json", "files[0]", "files[1]"]
        assert req["body"]["allowed_mentions"] == {"parse": []}
        assert req["headers"]["X-Audit-Log-Reason"] == "clean-up%3A%20caf%C3%A9%20%26%20co"
        assert req["headers"]["User-Agent"].startswith("DiscordBot (https://example.invalid/")


def test_start_up_check_says_401_clearly():
    with FakeDiscord({}) as fake:
        lines, err = run_lines(fake, {"start": True, "channels": [fake.channel_id],
                                      "configure": {"token": "revoked-token-x2"}})
        start = [r for r in lines if r.get("kind") == "start"]
        assert start and not start[0]["ok"] and start[0]["unauthorized"], lines
        assert "rejected the bot token (401 Unauthorized)" in start[0]["err"]
        assert [r for r in lines if r.get("kind") is None] == []   # nothing sent after it
        assert len(fake.requests()) == 1
        assert "revoked-token-x2" not in err


def test_interaction_callback_never_waits_behind_other_traffic():
    scen = scenario_with_channels(20, rate_limit_scale=0.02)
    with FakeDiscord(scen) as fake:
        it = fake.slash("ask", options={"prompt": "hi"})
        ids = [c["id"] for c in make_channels(20)]
        lines, err = run_lines(fake, {"channels": ids, "per_channel": 10,
                                      "interaction": {"id": it["id"], "token": it["token"],
                                                      "after": 0.5}})
        cb = [r for r in lines if r.get("kind") == "interaction"]
        assert cb and cb[0]["ok"], (cb, err)
        # 200 messages need 4 s at 50/s; at 0.5 s most of them still wait, the callback not
        sent = cb[0]["stats"]["sent"]
        assert sent < 150, sent
        assert cb[0]["seconds"] < 0.25, cb[0]
        assert [r["type"] for r in fake.interaction_responses()] == [4]
        assert fake.state()["rest"]["exhausted_hits"] == 0
