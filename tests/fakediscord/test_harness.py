"""The harness itself: start/stop leave nothing behind, waiting never sleeps blindly,
and the remaining scenario knobs behave as documented."""

import os
import shutil
import subprocess
import sys
import time

import aiohttp
import pytest

from fakediscord.client import Gateway, Rest, run
from fakediscord.harness import FakeDiscord, FakeError, SERVER, PYTHON


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0); the harness reaps, so this means alive
    return False


def test_start_stop_leaves_no_process_and_no_files():
    fake = FakeDiscord({"tls": True}).start()
    pid = fake.urls["pid"]
    d = fake.dir
    assert os.path.exists(fake.ca_file) and fake.ca_file.startswith(d)
    assert fake.api_url.endswith("/api/v10") and "?" not in fake.gateway_url
    ports = fake.urls["ports"]
    assert len(set(ports.values())) == 4
    fake.stop()
    assert _gone(pid) and not os.path.exists(d)
    fake.stop()  # idempotent


def test_server_exits_when_its_parent_goes_away():
    # the harness keeps the server's stdin; when that closes (the test process died), it exits
    p = subprocess.Popen([PYTHON, SERVER, "--watch-stdin"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = p.stdout.readline()
    assert b"control_url" in line
    p.stdin.close()
    assert p.wait(10) == 0
    p.stdout.close()


def test_unknown_scenario_option_fails_fast():
    with pytest.raises(FakeError):
        FakeDiscord({"no_such_option": 1}).start()


@pytest.mark.fake_discord(scenario={})
def test_wait_until_returns_value_and_times_out(fake_discord):
    fake = fake_discord
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        fake.wait_until(lambda: False, timeout=0.3, what="never")
    assert 0.3 <= time.monotonic() - t0 < 5
    fake.post_message("x")
    got = fake.wait_until(lambda: fake.messages(fake.channel_id), timeout=1)
    assert got[0]["content"] == "x"
    with pytest.raises(TimeoutError):
        fake.wait_for_bot_message(fake.channel_id, timeout=0.2)


@pytest.mark.fake_discord(scenario={})
def test_control_errors_are_reported(fake_discord):
    with pytest.raises(FakeError):
        fake_discord.click("no-such-button")
    with pytest.raises(FakeError):
        fake_discord.configure(not_an_option=1)
    with pytest.raises(FakeError):
        fake_discord.fail("/no/method", 500)


@pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
@pytest.mark.fake_discord(scenario={}, tls=True)
def test_curl_trusts_the_generated_ca(fake_discord):
    fake = fake_discord
    out = subprocess.run(["curl", "-sS", "--cacert", fake.ca_file, "-H", "Authorization: Bot " + fake.token,
                          "-A", "DiscordBot (https://example.invalid, 1.0)", fake.api_url + "/users/@me"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert fake.bot_id in out.stdout
    bad = subprocess.run(["curl", "-sS", fake.api_url + "/users/@me"], capture_output=True, timeout=20)
    assert bad.returncode != 0  # not trusted without the test CA


@pytest.mark.fake_discord(scenario={"rate_limits": False})
def test_refuse_rest_then_recover(fake_discord):
    fake = fake_discord

    async def go():
        async with aiohttp.ClientSession() as s:
            st, _, _ = await Rest(fake, s).req("GET", "/users/@me")  # a keep-alive connection
            assert st == 200
            fake.refuse(1.0, what="rest")
            with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientConnectorError,
                                aiohttp.ClientOSError)):
                await Rest(fake, s).req("GET", "/users/@me")  # the aborted keep-alive connection
            with pytest.raises(aiohttp.ClientConnectorError):
                await Rest(fake, s).req("GET", "/users/@me")  # a new connection: refused
            fake.wait_until(lambda: not fake.state()["refused"], timeout=5, what="rest back")
            st, _, _ = await Rest(fake, s).req("GET", "/users/@me")
            assert st == 200
    run(go())


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 250, "heartbeat_timeout_code": 0, "shards": 2})
def test_shards_route_guild_events_and_dms(fake_discord):
    fake = fake_discord
    gshard = (int(fake.guild_id) >> 22) % 2

    async def go():
        async with aiohttp.ClientSession() as s:
            gws = []
            for sid in (0, 1):
                gw = await Gateway(fake, s).connect()
                ready = await gw.ready(shard=[sid, 2])
                assert ready["d"]["shard"] == [sid, 2]
                assert bool(ready["d"]["guilds"]) == (sid == gshard)
                gws.append(gw)
            fake.post_message("guild msg")
            fake.post_message("dm msg", channel="dm")
            g = await gws[gshard].recv_until(lambda p: p.get("t") == "MESSAGE_CREATE")
            assert g["d"]["content"] == "guild msg"
            dm = await gws[0].recv_until(lambda p: p.get("t") == "MESSAGE_CREATE" and p["d"]["content"] == "dm msg")
            assert "guild_id" not in dm["d"]
            if gshard == 1:  # shard 1 must not see the DM
                await gws[1].heartbeat()
                p = await gws[1].recv_until(lambda p: p.get("t") == "MESSAGE_CREATE" or p["op"] == 11)
                assert p["op"] == 11
    run(go())


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 250, "heartbeat_timeout_code": 0, "op7_before_hello": 1})
def test_op7_before_hello_and_identify_window_counted(fake_discord):
    fake = fake_discord

    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake, s).connect()
            assert (await gw.recv())["op"] == 7
            await gw.close(4000)
            gw = await Gateway(fake, s).connect()
            await gw.ready()
            await gw.close(4000)
            gw = await Gateway(fake, s).connect()
            await gw.ready()  # within 5 s of the previous Identify
    run(go())
    st = fake.state()["gateway"]
    assert st["identify"] == 2 and st["identify_too_fast"] == 1


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 250, "heartbeat_timeout_code": 0, "enforce_identify_window": True})
def test_identify_window_enforced(fake_discord):
    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake_discord, s).connect()
            await gw.ready()
            gw2 = await Gateway(fake_discord, s).connect()
            await gw2.hello()
            await gw2.identify()
            p = await gw2.recv()
            assert p["op"] == 9 and p["d"] is False
    run(go())


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 250, "heartbeat_timeout_code": 0})
def test_autocomplete_interaction(fake_discord):
    fake = fake_discord

    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake, s).connect()
            await gw.ready()
            it = fake.autocomplete("ask", [{"name": "model", "value": "so", "focused": True}])
            p = await gw.recv_until(lambda p: p.get("t") == "INTERACTION_CREATE")
            assert p["d"]["type"] == 4 and p["d"]["data"]["options"][0]["focused"] is True
            r = Rest(fake, s)
            cb = "/interactions/%s/%s/callback" % (it["id"], it["token"])
            st, body, _ = await r.req("POST", cb, {"type": 4, "data": {"content": "no"}})
            assert st == 400  # only type 8 answers an autocomplete
            st, _, _ = await r.req("POST", cb, {"type": 8, "data": {"choices": [{"name": "sonnet", "value": "sonnet"}]}})
            assert st == 204
    run(go())


@pytest.mark.fake_discord(scenario={"rate_limits": False})
def test_concurrency_per_route_recorded(fake_discord):
    fake = fake_discord
    fake.fail("POST /channels/{channel_id}/typing", status=None, delay=0.3, times=2)
    import asyncio

    async def go():
        async with aiohttp.ClientSession() as s:
            r = Rest(fake, s)
            await asyncio.gather(*(r.req("POST", "/channels/%s/typing" % fake.channel_id) for _ in range(2)))
    run(go())
    assert fake.state()["rest"]["max_inflight_per_route"] == 2
    assert sys.version_info >= (3, 9)


@pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
@pytest.mark.fake_discord(scenario={"rate_limits": False}, tls=True)
def test_curl_json_with_expect_and_multipart(fake_discord, tmp_path):
    """libcurl's own encodings: Expect: 100-continue on large bodies, -F multipart."""
    fake = fake_discord
    url = "%s/channels/%s/messages" % (fake.api_url, fake.channel_id)
    common = ["curl", "-sS", "--cacert", fake.ca_file, "-H", "Authorization: Bot " + fake.token,
              "-A", "DiscordBot (https://example.invalid, 1.0)"]
    body = tmp_path / "body.json"
    body.write_text('{"content": "%s"}' % ("x" * 1999))
    out = subprocess.run(common + ["-H", "Content-Type: application/json", "-H", "Expect: 100-continue",
                                   "--data-binary", "@%s" % body, url],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0 and '"content": "xxx' in out.stdout, out.stdout + out.stderr
    f = tmp_path / "report.txt"
    f.write_text("the report\n")
    out = subprocess.run(common + ["-F", 'payload_json={"content": "see file"};type=application/json',
                                   "-F", "files[0]=@%s;type=text/plain" % f, url],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    msgs = fake.bot_messages(fake.channel_id)
    assert [m["content"][:8] for m in msgs] == ["x" * 8, "see file"]
    assert msgs[1]["attachments"][0]["filename"] == "report.txt"
    assert fake.file(msgs[1]["attachments"][0]["id"]) == b"the report\n"


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 250, "heartbeat_timeout_code": 0})
def test_wait_helpers_and_connection_path(fake_discord):
    fake = fake_discord

    async def go():
        async with aiohttp.ClientSession() as s:
            gw = Gateway(fake, s)
            gw.url = fake.gateway_url + "/?v=10&encoding=json"
            await gw.connect()
            ready = await gw.ready()
            info = fake.wait_ready()
            assert info["path"] == "/" and info["query"] == {"v": "10", "encoding": "json"}
            assert info["hello_at"] is not None and info["kind"] == "gateway"
            await gw.recv_until(lambda p: p.get("t") == "GUILD_CREATE")
            await gw.close(4000)
            gw2 = await Gateway(fake, s, url=fake.resume_gateway_url).connect()
            await gw2.hello()
            await gw2.send({"op": 6, "d": {"token": fake.token, "session_id": ready["d"]["session_id"],
                                           "seq": gw.seq}})
            fake.wait_resumed()
            conns = fake.wait_connections(2)
            assert conns[1]["kind"] == "resume" and conns[0]["close_code"] == 4000
            assert conns[0]["closed_by"] == "client"
    run(go())


def test_stop_is_prompt_with_a_request_in_flight():
    fake = FakeDiscord({"rate_limits": False}).start()
    pid = fake.urls["pid"]
    fake.fail("GET /users/@me", status=None, delay=60)
    p = subprocess.Popen(["curl", "-s", "-m", "30", "-H", "Authorization: Bot " + fake.token,
                          "-A", "DiscordBot (x, 1)", fake.api_url + "/users/@me"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        fake.wait_until(lambda: fake.requests(route="GET /users/@me"), what="request in flight")
        t0 = time.monotonic()
        fake.stop()
        assert time.monotonic() - t0 < 4 and _gone(pid)
    finally:
        p.kill()
        p.wait()
