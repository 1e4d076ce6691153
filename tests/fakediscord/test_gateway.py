"""The fake gateway against an independent client: every protocol point it must honour."""

import asyncio
import json
import zlib

import aiohttp
import pytest

from fakediscord.client import Gateway, RawWebSocket, Rest, run

FAST = {"heartbeat_interval": 250, "heartbeat_timeout_code": 0}


async def _session():
    return aiohttp.ClientSession()


@pytest.mark.fake_discord(scenario=FAST)
def test_gateway_bot_hello_identify_ready(fake_discord):
    fake = fake_discord

    async def go():
        async with aiohttp.ClientSession() as s:
            st, body, _ = await Rest(fake, s).req("GET", "/gateway/bot")
            assert st == 200
            assert body["url"] == fake.gateway_url
            assert body["shards"] == 1
            ssl_ = body["session_start_limit"]
            assert ssl_["max_concurrency"] == 1 and ssl_["remaining"] == 1000 and ssl_["total"] == 1000
            gw = await Gateway(fake, s).connect()
            hello = await gw.hello()
            assert hello["d"]["heartbeat_interval"] == 250 and hello["s"] is None
            await gw.send({"op": 1, "d": None})
            ack = await gw.recv()
            assert ack["op"] == 11
            await gw.identify()
            ready = await gw.recv()
            assert ready["op"] == 0 and ready["t"] == "READY" and ready["s"] == 1
            d = ready["d"]
            assert d["v"] == 10 and len(d["session_id"]) >= 16
            assert d["resume_gateway_url"] == fake.resume_gateway_url != fake.gateway_url
            assert d["user"]["id"] == fake.bot_id and d["user"]["bot"] is True
            assert d["application"]["id"] == fake.application_id
            assert d["guilds"] == [{"id": fake.guild_id, "unavailable": True}]
            gc = await gw.recv()
            assert gc["t"] == "GUILD_CREATE" and gc["s"] == 2
            assert gc["d"]["id"] == fake.guild_id
            assert {c["id"] for c in gc["d"]["channels"]} == {fake.channel_id}
            assert {t["id"] for t in gc["d"]["threads"]} == {fake.thread_id}
            fake.post_message("one")
            fake.post_message("two", mention_bot=True)
            m1, m2 = await gw.recv(), await gw.recv()
            assert (m1["t"], m1["s"], m2["s"]) == ("MESSAGE_CREATE", 3, 4)
            assert m1["d"]["content"] == "one" and m1["d"]["guild_id"] == fake.guild_id
            assert m2["d"]["mentions"][0]["id"] == fake.bot_id
            await gw.heartbeat()
            assert (await gw.recv())["op"] == 11
            frames = fake.frames()
            assert [f["op"] for f in frames] == [1, 2, 1]
            assert frames[1]["d"]["token_ok"] is True and "token" not in frames[1]["d"]
            assert frames[2]["d"] == 4
            st = fake.state()["gateway"]
            assert st["identify"] == 1 and st["connections"] == 1 and st["heartbeat_seq_mismatch"] == 0
            await gw.close()
            conn = fake.wait_until(lambda: [c for c in fake.connections() if c["closed"]],
                                   what="close recorded")[0]
            assert conn["close_code"] == 1000 and conn["closed_by"] == "client"
    run(go())


@pytest.mark.parametrize("scenario,identify,code", [
    ({}, {"token": "wrong"}, 4004),
    ({"allowed_intents": []}, {}, 4014),
    ({}, {"intents": 1 << 30}, 4013),
    ({}, {"shard": [1, 1]}, 4010),
    ({"shards_required": 2}, {"shard": [0, 1]}, 4011),
    ({}, {"properties": "linux"}, 4002),
])
def test_identify_rejections(scenario, identify, code):
    from fakediscord.harness import FakeDiscord
    with FakeDiscord(scenario) as fake:
        async def go():
            async with aiohttp.ClientSession() as s:
                gw = await Gateway(fake, s).connect()
                await gw.hello()
                await gw.identify(**identify)
                assert await gw.expect_close() == code
        run(go())
        conn = fake.connections()[0]
        assert conn["close_code"] == code and conn["closed_by"] == "server"


@pytest.mark.fake_discord(scenario=FAST)
def test_api_version_and_encoding_checked(fake_discord):
    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake_discord, s, query="v=9&encoding=json").connect()
            assert await gw.expect_close() == 4012
            gw = await Gateway(fake_discord, s, query="v=10&encoding=etf").connect()
            assert await gw.expect_close() == 4002
    run(go())


@pytest.mark.fake_discord(scenario=FAST)
def test_not_authenticated_unknown_opcode_already_authenticated(fake_discord):
    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake_discord, s).connect()
            await gw.hello()
            await gw.send({"op": 3, "d": {"status": "online", "since": None, "activities": [], "afk": False}})
            assert await gw.expect_close() == 4003
            gw = await Gateway(fake_discord, s).connect()
            await gw.hello()
            await gw.send({"op": 42, "d": None})
            assert await gw.expect_close() == 4001
            gw = await Gateway(fake_discord, s).connect()
            await gw.ready()
            await gw.identify()
            assert await gw.expect_close() == 4005
    run(go())


@pytest.mark.fake_discord(scenario=FAST)
def test_payload_over_4096_bytes_closes_4002(fake_discord):
    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake_discord, s).connect()
            await gw.ready()
            ok = {"op": 3, "d": {"since": None, "activities": [{"name": "x" * 3900, "type": 0}],
                                 "status": "online", "afk": False}}
            assert len(json.dumps(ok)) <= 4096
            await gw.send(ok)
            await gw.heartbeat()
            assert (await gw.recv_until(lambda p: p["op"] == 11))["op"] == 11
            ok["d"]["activities"][0]["name"] = "x" * 4100
            await gw.send(ok)
            assert await gw.expect_close() == 4002
    run(go())


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 250, "heartbeat_timeout_code": 0, "gateway_send_limit": 120})
def test_more_than_120_payloads_per_window_closes_4008(fake_discord):
    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake_discord, s).connect()
            await gw.ready()
            for _ in range(119):  # identify was the first payload
                await gw.heartbeat()
            acks = 0
            while acks < 119:
                p = await gw.recv()
                assert not isinstance(p, tuple), "closed after only 120 payloads"
                acks += p["op"] == 11
            await gw.heartbeat()  # the 121st
            assert await gw.expect_close() == 4008
    run(go())


@pytest.mark.fake_discord(scenario=FAST)
def test_resume_replays_missed_events_then_resumed(fake_discord):
    fake = fake_discord

    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake, s).connect()
            ready = await gw.ready()
            await gw.recv_until(lambda p: p.get("t") == "GUILD_CREATE")
            sid, seq = ready["d"]["session_id"], gw.seq
            assert seq == 2
            fake.drop_gateway()
            assert (await gw.recv_until(lambda p: False))[0] in ("close", "error")
            fake.wait_until(lambda: fake.state()["gateway"]["live"] == 0, what="drop")
            fake.post_message("while away")
            fake.post_message("also away", channel="dm")
            # resuming on the first URL is refused: the client must use resume_gateway_url
            wrong = await Gateway(fake, s).connect()
            await wrong.hello()
            await wrong.send({"op": 6, "d": {"token": fake.token, "session_id": sid, "seq": seq}})
            inv = await wrong.recv()
            assert inv["op"] == 9 and inv["d"] is False
            await wrong.close()
            assert fake.state()["gateway"]["resume_wrong_url"] == 1
            # the session was invalidated by that; start another and resume it properly
            gw = await Gateway(fake, s).connect()
            ready = await gw.ready()
            await gw.recv_until(lambda p: p.get("t") == "GUILD_CREATE")
            sid, seq = ready["d"]["session_id"], gw.seq
            await gw.close(4000)
            fake.post_message("missed one")
            fake.post_message("missed two")
            gw2 = await Gateway(fake, s, url=ready["d"]["resume_gateway_url"]).connect()
            await gw2.hello()
            await gw2.send({"op": 6, "d": {"token": fake.token, "session_id": sid, "seq": seq}})
            r1, r2, r3 = await gw2.recv(), await gw2.recv(), await gw2.recv()
            assert [r1["d"]["content"], r2["d"]["content"]] == ["missed one", "missed two"]
            assert [r1["s"], r2["s"]] == [seq + 1, seq + 2]
            assert r3["t"] == "RESUMED" and r3["s"] == seq + 3
            fake.post_message("live again")
            live = await gw2.recv()
            assert live["s"] == seq + 4 and live["d"]["content"] == "live again"
            # stale seq beyond what the session has: 4007
            await gw2.close(4000)
            gw3 = await Gateway(fake, s, url=fake.resume_gateway_url).connect()
            await gw3.hello()
            await gw3.send({"op": 6, "d": {"token": fake.token, "session_id": sid, "seq": seq + 99}})
            assert await gw3.expect_close() == 4007
            st = fake.state()["gateway"]
            assert st["resume"] == 3 and st["resumed"] == 1 and st["identify"] == 2
    run(go())


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 250, "heartbeat_timeout_code": 0, "guild_create_members": 5000})
def test_zlib_stream_fragmented_shared_context(fake_discord):
    fake = fake_discord
    raw = RawWebSocket(fake, fake.gateway_url, "v=10&encoding=json&compress=zlib-stream")
    z = zlib.decompressobj()
    frames_per_message = []

    def message():
        data, n = b"", 0
        while True:
            f = raw.frame()
            if f["opcode"] in (0x9, 0xA):
                continue
            assert f["rsv"] == 0
            assert f["opcode"] == (0x2 if n == 0 else 0x0), f["opcode"]
            data += f["payload"]
            n += 1
            if f["fin"]:
                break
        frames_per_message.append(n)
        assert data.endswith(b"\x00\x00\xff\xff")
        return json.loads(z.decompress(data))

    try:
        hello = message()
        assert hello["op"] == 10
        raw.send_text(json.dumps({"op": 2, "d": {
            "token": fake.token, "intents": 513,
            "properties": {"os": "linux", "browser": "t", "device": "t"}}}))
        ready = message()
        assert ready["t"] == "READY"
        gc = message()
        assert gc["t"] == "GUILD_CREATE" and len(gc["d"]["members"]) >= 5000
        raw.send_text(json.dumps({"op": 1, "d": 2}))
        assert message()["op"] == 11
    finally:
        raw.close()
    assert all(n >= 2 for n in frames_per_message), frames_per_message
    assert fake.state()["gateway"]["fragments_sent"] >= 8

    async def go():  # the same through aiohttp's reassembly and a fresh inflate context
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake, s, compress=True).connect()
            ready = await gw.ready()
            assert ready["d"]["user"]["id"] == fake.bot_id
            gc = await gw.recv()
            assert gc["t"] == "GUILD_CREATE"
    run(go())


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 250, "heartbeat_timeout_code": 0, "fragment_text": True, "fragment_size": 7})
def test_uncompressed_fragmentation_option(fake_discord):
    raw = RawWebSocket(fake_discord, fake_discord.gateway_url, "v=10&encoding=json")
    try:
        first = raw.frame()
        assert first["opcode"] == 0x1 and not first["fin"] and len(first["payload"]) == 7
        data = first["payload"]
        while True:
            f = raw.frame()
            assert f["opcode"] == 0
            data += f["payload"]
            if f["fin"]:
                break
        assert json.loads(data)["op"] == 10
    finally:
        raw.close()


@pytest.mark.fake_discord(scenario=FAST)
def test_control_ops_close_codes_acks_and_drop(fake_discord):
    fake = fake_discord

    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake, s).connect()
            await gw.ready()
            fake.send_op(1)
            assert (await gw.recv_until(lambda p: p["op"] == 1))["d"] is None
            fake.send_op(7)
            assert (await gw.recv_until(lambda p: p["op"] == 7))["op"] == 7
            fake.set_heartbeat_acks(False)
            await gw.heartbeat()
            fake.wait_until(lambda: fake.state()["gateway"]["heartbeats"] >= 1, what="heartbeat")
            fake.post_message("marker")
            p = await gw.recv()
            assert p.get("t") == "MESSAGE_CREATE", "an ACK arrived although ACKs are off: %r" % p
            fake.set_heartbeat_acks(True)
            await gw.heartbeat()
            assert (await gw.recv())["op"] == 11
            fake.send_op(9, True)
            assert (await gw.recv_until(lambda p: p["op"] == 9))["d"] is True
            assert len(fake.sessions()) == 1
            fake.send_op(9, False)
            assert (await gw.recv_until(lambda p: p["op"] == 9))["d"] is False
            assert fake.sessions() == []   # d:false drops the session
            fake.close_gateway(4000, "test close")
            assert await gw.expect_close() == 4000
            gw = await Gateway(fake, s).connect()
            await gw.hello()
            fake.drop_gateway()
            r = await gw.recv_until(lambda p: False)
            assert r[0] in ("close", "error") and r[1] != 1000 and r[1] != 4000
            conns = fake.connections()
            assert [c["closed_by"] for c in conns] == ["server", "drop"]
            assert conns[0]["close_code"] == 4000
    run(go())


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 100, "heartbeat_timeout_factor": 1.0})
def test_server_closes_a_client_that_stops_heartbeating(fake_discord):
    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake_discord, s).connect()
            await gw.ready()
            assert await gw.expect_close(timeout=5) == 4009
    run(go())


@pytest.mark.fake_discord(scenario=FAST)
def test_refuse_connections_for_a_while(fake_discord):
    fake = fake_discord

    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake, s).connect()
            await gw.hello()
            fake.refuse(1.5)
            r = await gw.recv_until(lambda p: False)
            assert r[0] in ("close", "error")
            with pytest.raises(aiohttp.ClientConnectorError):
                await Gateway(fake, s).connect()
            with pytest.raises(aiohttp.ClientConnectorError):
                await Gateway(fake, s, url=fake.resume_gateway_url).connect()
            fake.wait_until(lambda: not fake.state()["refused"], timeout=5, what="listening again")
            gw = await Gateway(fake, s).connect()
            assert (await gw.hello())["op"] == 10
            await gw.close()
    run(go())


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 250, "heartbeat_timeout_code": 0, "hello_delay": 0.2})
def test_hello_delay(fake_discord):
    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake_discord, s).connect()
            t0 = asyncio.get_running_loop().time()
            await gw.hello()
            assert asyncio.get_running_loop().time() - t0 >= 0.15
    run(go())


@pytest.mark.fake_discord(scenario=FAST)
def test_intents_filter_and_message_content(fake_discord):
    fake = fake_discord

    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake, s).connect()
            await gw.ready(intents=(1 << 0) | (1 << 9) | (1 << 12))  # no MESSAGE_CONTENT
            await gw.recv_until(lambda p: p.get("t") == "GUILD_CREATE")
            fake.post_message("secret")
            fake.post_message("for you", mention_bot=True)
            fake.post_message("in dm", channel="dm")
            fake.post_message("in thread", channel="thread", roles=[fake.role_id])
            a, b, c, d = [await gw.recv() for _ in range(4)]
            assert a["d"]["content"] == ""
            assert b["d"]["content"].endswith("for you")
            assert c["d"]["content"] == "in dm" and "guild_id" not in c["d"]
            assert c["d"]["author"]["id"] == fake.user_id
            assert d["d"]["channel_id"] == fake.thread_id and d["d"]["member"]["roles"] == [fake.role_id]
            gw2 = await Gateway(fake, s).connect()
            await gw2.ready(intents=1 << 0)  # GUILDS only: no messages at all
            await gw2.recv_until(lambda p: p.get("t") == "GUILD_CREATE")
            fake.post_message("nobody hears", mention_bot=True)
            fake.slash("ask", {"prompt": "hi"})
            p = await gw2.recv()
            assert p["t"] == "INTERACTION_CREATE"  # regardless of intents
    run(go())


@pytest.mark.fake_discord(scenario=FAST, tls=True)
def test_tls_wss_and_https(fake_discord):
    fake = fake_discord
    assert fake.gateway_url.startswith("wss://") and fake.api_url.startswith("https://")
    assert fake.resume_gateway_url.startswith("wss://")

    async def go():
        async with aiohttp.ClientSession() as s:
            st, body, _ = await Rest(fake, s).req("GET", "/users/@me")
            assert st == 200 and body["id"] == fake.bot_id
            gw = await Gateway(fake, s, compress=True).connect()
            ready = await gw.ready()
            assert ready["d"]["resume_gateway_url"].startswith("wss://")
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await s.get(fake.api_url + "/users/@me")  # system CAs do not trust the fake
    run(go())
    raw = RawWebSocket(fake, fake.gateway_url, "v=10&encoding=json&compress=zlib-stream")
    try:
        f = raw.frame()
        assert f["opcode"] == 2 and not f["fin"]
    finally:
        raw.close()


@pytest.mark.fake_discord(scenario=FAST)
def test_close_1000_ends_the_session_and_op9_false_allows_identify(fake_discord):
    fake = fake_discord

    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake, s).connect()
            ready = await gw.ready()
            await gw.close(1000)
            gw2 = await Gateway(fake, s, url=fake.resume_gateway_url).connect()
            await gw2.hello()
            await gw2.send({"op": 6, "d": {"token": fake.token, "session_id": ready["d"]["session_id"],
                                           "seq": gw.seq}})
            p = await gw2.recv()
            assert p["op"] == 9 and p["d"] is False  # a 1000 close cannot be resumed
            await gw2.identify()  # Identify after op 9 false, on the same connection
            p = await gw2.recv()
            assert p["t"] == "READY" and p["d"]["session_id"] != ready["d"]["session_id"]
            fake.send_op(9, False)
            assert (await gw2.recv_until(lambda p: p["op"] == 9))["d"] is False
            await gw2.identify()
            assert (await gw2.recv_until(lambda p: p.get("t") == "READY"))["t"] == "READY"
    run(go())
    assert fake.state()["gateway"]["identify"] == 3


@pytest.mark.fake_discord(scenario=FAST)
def test_heartbeat_with_a_stale_seq_is_counted(fake_discord):
    fake = fake_discord

    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake, s).connect()
            await gw.ready()
            await gw.recv_until(lambda p: p.get("t") == "GUILD_CREATE")
            await gw.heartbeat()  # d = 2, right
            await gw.recv()
            await asyncio.sleep(0.6)  # the threshold for "still in flight" is time itself
            await gw.send({"op": 1, "d": 1})  # stale
            await gw.recv()
            await gw.send({"op": 1, "d": None})  # null after events were received
            await gw.recv()
    run(go())
    assert fake.state()["gateway"]["heartbeat_seq_mismatch"] == 2


@pytest.mark.fake_discord(scenario=dict(FAST, send_ready=False))
def test_withheld_ready(fake_discord):
    async def go():
        async with aiohttp.ClientSession() as s:
            gw = await Gateway(fake_discord, s).connect()
            await gw.hello()
            await gw.identify()
            await gw.heartbeat()
            p = await gw.recv()
            assert p["op"] == 11  # no READY came first
            assert fake_discord.wait_ready()["identified"]
    run(go())
