"""The fake REST API against an independent aiohttp client."""

import asyncio
import json
import time

import aiohttp
import pytest

from fakediscord.client import Rest, run

NO_LIMITS = {"rate_limits": False}


def rest_call(fake, method, path, body=None, **kw):
    async def go():
        async with aiohttp.ClientSession() as s:
            return await Rest(fake, s).req(method, path, body, **kw)
    return run(go())


@pytest.mark.fake_discord(scenario=NO_LIMITS)
def test_authorization_and_user_agent_checked(fake_discord):
    fake = fake_discord
    st, body, _ = rest_call(fake, "GET", "/users/@me", auth=False)
    assert st == 401 and body == {"message": "401: Unauthorized", "code": 0}
    st, body, _ = rest_call(fake, "GET", "/users/@me", auth="Bearer " + fake.token)
    assert st == 401
    st, body, _ = rest_call(fake, "GET", "/users/@me", ua="curl/8.0")
    assert st == 400
    st, body, _ = rest_call(fake, "GET", "/users/@me", ua=None)
    assert st == 400
    st, body, _ = rest_call(fake, "GET", "/users/@me")
    assert st == 200 and body["id"] == fake.bot_id and body["bot"] is True
    st, body, _ = rest_call(fake, "GET", "/nope")
    assert st == 404 and body["code"] == 0
    rest = fake.state()["rest"]
    assert rest["bad_auth"] == 2 and rest["bad_user_agent"] == 2
    reqs = fake.requests(route="GET /users/@me")
    assert [r["status"] for r in reqs] == [401, 401, 400, 400, 200]
    assert reqs[-1]["headers"]["Authorization"] == "Bot <redacted>" and reqs[-1]["auth_ok"]
    assert fake.token not in json.dumps(fake.requests())


@pytest.mark.fake_discord(scenario=NO_LIMITS)
def test_create_edit_delete_typing_reaction(fake_discord):
    fake = fake_discord
    ch = fake.channel_id
    user_msg = fake.post_message("hello bot", mention_bot=True)
    st, m, _ = rest_call(fake, "POST", "/channels/%s/messages" % ch, {
        "content": "hi <@%s>" % fake.user_id, "allowed_mentions": {"parse": []},
        "message_reference": {"message_id": user_msg["id"], "fail_if_not_exists": False}})
    assert st == 200 and m["author"]["id"] == fake.bot_id and m["channel_id"] == ch
    assert m["type"] == 19 and m["referenced_message"]["id"] == user_msg["id"]
    assert m["mentions"] == []  # parse: [] pings nobody
    st, m2, _ = rest_call(fake, "POST", "/channels/%s/messages" % ch, {"content": "ping <@%s>" % fake.user_id})
    assert [u["id"] for u in m2["mentions"]] == [fake.user_id]  # default parses every mention
    st, e, _ = rest_call(fake, "PATCH", "/channels/%s/messages/%s" % (ch, m["id"]), {"content": "edited"})
    assert st == 200 and e["content"] == "edited" and e["edited_timestamp"]
    st, _, _ = rest_call(fake, "PATCH", "/channels/%s/messages/%s" % (ch, user_msg["id"]), {"content": "x"})
    assert st == 403
    st, body, _ = rest_call(fake, "PATCH", "/channels/%s/messages/1" % ch, {"content": "x"})
    assert st == 404 and body["code"] == 10008
    st, body, _ = rest_call(fake, "POST", "/channels/1/messages", {"content": "x"})
    assert st == 404 and body == {"message": "Unknown Channel", "code": 10003}
    st, _, _ = rest_call(fake, "POST", "/channels/%s/typing" % ch)
    assert st == 204
    st, _, _ = rest_call(fake, "PUT", "/channels/%s/messages/%s/reactions/%s/@me" % (ch, user_msg["id"], "%F0%9F%91%8D"))
    assert st == 204
    st, body, _ = rest_call(fake, "PUT", "/channels/%s/messages/%s/reactions/notanemoji/@me" % (ch, user_msg["id"]))
    assert st == 400 and body["code"] == 10014
    st, _, _ = rest_call(fake, "DELETE", "/channels/%s/messages/%s" % (ch, m2["id"]))
    assert st == 204
    st, _, _ = rest_call(fake, "DELETE", "/channels/%s/messages/%s" % (ch, m2["id"]))
    assert st == 404
    msgs = fake.messages(ch)
    assert [x["content"] for x in msgs] == ["<@%s> hello bot" % fake.bot_id, "edited",
                                            "ping <@%s>" % fake.user_id]
    assert [x["from_bot"] for x in msgs] == [False, True, True]
    assert msgs[1]["history"][0]["content"] == "hi <@%s>" % fake.user_id
    assert msgs[2]["deleted"] and not msgs[1]["deleted"]
    assert [x["content"] for x in fake.bot_messages(ch) if not x["deleted"]] == ["edited"]
    assert len(fake.edits()) == 1 and fake.edits()[0]["after"]["content"] == "edited"
    assert [d["message_id"] for d in fake.deletions()] == [m2["id"]]
    assert [t["channel_id"] for t in fake.typing()] == [ch]
    assert fake.reactions()[0]["emoji"] == "\U0001F44D"
    # the reply referencing an unknown message fails unless fail_if_not_exists is false
    st, body, _ = rest_call(fake, "POST", "/channels/%s/messages" % ch, {
        "content": "x", "message_reference": {"message_id": "123"}})
    assert st == 400 and "message_reference" in body["errors"]
    # DMs and threads work the same
    for cid in (fake.dm_channel_id, fake.thread_id):
        st, _, _ = rest_call(fake, "POST", "/channels/%s/messages" % cid, {"content": "there"})
        assert st == 200
    assert fake.bot_messages(fake.thread_id)[0]["content"] == "there"


@pytest.mark.fake_discord(scenario=NO_LIMITS)
def test_multipart_payload_json_and_files(fake_discord):
    fake = fake_discord

    async def go():
        async with aiohttp.ClientSession() as s:
            form = aiohttp.FormData()
            form.add_field("payload_json", json.dumps({
                "content": "two files", "attachments": [{"id": 0, "description": "first"},
                                                        {"id": 1}]}), content_type="application/json")
            form.add_field("files[0]", b"hello\n", filename="a.txt", content_type="text/plain")
            form.add_field("files[1]", bytes(range(256)) * 100, filename="b.bin",
                           content_type="application/octet-stream")
            st, m, _ = await Rest(fake, s).req("POST", "/channels/%s/messages" % fake.channel_id, data=form)
            assert st == 200, m
            assert [a["filename"] for a in m["attachments"]] == ["a.txt", "b.bin"]
            assert m["attachments"][0]["description"] == "first"
            assert m["attachments"][1]["size"] == 25600
            assert fake.file(m["attachments"][0]["id"]) == b"hello\n"
            # a file alone is a valid message
            form = aiohttp.FormData()
            form.add_field("payload_json", json.dumps({}), content_type="application/json")
            form.add_field("files[0]", b"x", filename="x.txt")
            st, m, _ = await Rest(fake, s).req("POST", "/channels/%s/messages" % fake.channel_id, data=form)
            assert st == 200 and m["content"] == ""
            # bad JSON in payload_json
            form = aiohttp.FormData()
            form.add_field("payload_json", "{nope", content_type="application/json")
            st, body, _ = await Rest(fake, s).req("POST", "/channels/%s/messages" % fake.channel_id, data=form)
            assert st == 400 and body["code"] == 50109
    run(go())
    req = fake.requests(route="POST /channels/{channel_id}/messages")[0]
    assert [p["name"] for p in req["multipart"]] == ["payload_json", "files[0]", "files[1]"]
    assert req["body"]["content"] == "two files"


def _form_error(body, *path):
    assert body["code"] == 50035 and body["message"] == "Invalid Form Body", body
    node = body["errors"]
    for p in path:
        node = node[p]
    return node["_errors"][0]["code"]


@pytest.mark.fake_discord(scenario=NO_LIMITS)
def test_message_validation_like_discord(fake_discord):
    fake = fake_discord
    path = "/channels/%s/messages" % fake.channel_id
    post = lambda body: rest_call(fake, "POST", path, body)  # noqa: E731
    # 2000 code points pass even when they are 4000 UTF-16 units; 2001 fail
    st, _, _ = post({"content": "\U0001F600" * 2000})
    assert st == 200
    st, body, _ = post({"content": "a" * 2001})
    assert st == 400 and body == {"code": 50035, "message": "Invalid Form Body", "errors": {
        "content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}}}
    st, body, _ = post({"content": ""})
    assert st == 400 and body == {"message": "Cannot send an empty message", "code": 50006}
    st, body, _ = post({})
    assert st == 400 and body["code"] == 50006
    st, body, _ = post({"content": "x", "allowed_mentions": {"parse": {}}})
    assert st == 400 and _form_error(body, "allowed_mentions", "parse") == "LIST_TYPE_CONVERT"
    st, body, _ = post({"content": "x", "allowed_mentions": {"parse": ["users"], "users": [fake.user_id]}})
    assert st == 400 and _form_error(body, "allowed_mentions") == "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE"
    st, _, _ = post({"content": "x", "allowed_mentions": {"parse": []}})
    assert st == 200
    st, body, _ = post({"embeds": [{"title": "t" * 257}]})
    assert st == 400 and _form_error(body, "embeds", "0", "title") == "BASE_TYPE_MAX_LENGTH"
    st, body, _ = post({"embeds": [{"description": "d"}] * 11})
    assert st == 400 and _form_error(body, "embeds") == "BASE_TYPE_MAX_LENGTH"
    st, body, _ = post({"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]})
    assert st == 400 and _form_error(body, "embeds") == "MAX_EMBED_SIZE_EXCEEDED"
    st, body, _ = post({"embeds": [{"fields": [{"name": "n", "value": "v" * 1025}]}]})
    assert st == 400 and _form_error(body, "embeds", "0", "fields", "0", "value") == "BASE_TYPE_MAX_LENGTH"
    st, body, _ = post({"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]})
    assert st == 400 and _form_error(body, "embeds", "0", "fields") == "BASE_TYPE_MAX_LENGTH"
    st, body, _ = post({"embeds": [{"footer": {"text": "f" * 2049}}]})
    assert st == 400
    st, _, _ = post({"embeds": [{"title": "ok", "description": "fine", "fields": [{"name": "a", "value": "b"}]}]})
    assert st == 200
    button = {"type": 2, "style": 1, "label": "Reset", "custom_id": "reset"}
    st, _, _ = post({"content": "x", "components": [{"type": 1, "components": [button]}]})
    assert st == 200
    st, body, _ = post({"content": "x", "components": [button]})  # not inside an action row
    assert st == 400 and "components" in body["errors"]
    st, body, _ = post({"content": "x", "components": [{"type": 1, "components": [button] * 6}]})
    assert st == 400
    st, body, _ = post({"content": "x", "components": [{"type": 1, "components": [
        dict(button, custom_id="c" * 101)]}]})
    assert st == 400 and _form_error(body, "components", "0", "components", "0", "custom_id") == "BASE_TYPE_MAX_LENGTH"
    st, body, _ = post({"content": "x", "components": [{"type": 1, "components": [
        {"type": 2, "style": 5, "label": "link"}]}]})
    assert st == 400 and _form_error(body, "components", "0", "components", "0", "url") == "BASE_TYPE_REQUIRED"
    st, body, _ = post({"content": "x", "components": [{"type": 1, "components": [button, button]}]})
    assert st == 400
    st, body, _ = post({"content": "x", "nonce": "n" * 26})
    assert st == 400 and _form_error(body, "nonce") == "BASE_TYPE_MAX_LENGTH"
    st, body, _ = rest_call(fake, "POST", path, data=b"{not json", headers={"Content-Type": "application/json"})
    assert st == 400 and body["code"] == 50109
    assert fake.state()["rest"]["validation_errors"] >= 15


def test_rate_limit_headers_429_and_exhausted_counter():
    from fakediscord.harness import FakeDiscord
    routes = {"POST /channels/{channel_id}/messages": {"limit": 2, "window": 1.5}}
    with FakeDiscord({"routes": routes}) as fake:
        path = "/channels/%s/messages" % fake.channel_id

        async def go():
            async with aiohttp.ClientSession() as s:
                r = Rest(fake, s)
                st, _, h = await r.req("POST", path, {"content": "1"})
                assert st == 200
                assert h["X-RateLimit-Limit"] == "2" and h["X-RateLimit-Remaining"] == "1"
                assert "." in h["X-RateLimit-Reset-After"] and 0 < float(h["X-RateLimit-Reset-After"]) <= 1.5
                assert abs(float(h["X-RateLimit-Reset"]) - time.time() - 1.5) < 0.5
                bucket = h["X-RateLimit-Bucket"]
                st, _, h = await r.req("POST", path, {"content": "2"})
                assert st == 200 and h["X-RateLimit-Remaining"] == "0" and h["X-RateLimit-Bucket"] == bucket
                st, body, h = await r.req("POST", path, {"content": "3"})
                assert st == 429 and body["global"] is False
                assert isinstance(body["retry_after"], float) and 0 < body["retry_after"] <= 1.5
                assert h["X-RateLimit-Scope"] == "user" and "Retry-After" in h
                assert "X-RateLimit-Global" not in h
                # another channel (top-level resource) has its own counter in the same bucket
                st, _, h = await r.req("POST", "/channels/%s/messages" % fake.thread_id, {"content": "t"})
                assert st == 200 and h["X-RateLimit-Remaining"] == "1" and h["X-RateLimit-Bucket"] == bucket
                await asyncio.sleep(body["retry_after"])  # what a compliant client does
                st, _, h = await r.req("POST", path, {"content": "4"})
                assert st == 200 and h["X-RateLimit-Remaining"] == "1"
        run(go())
        rest = fake.state()["rest"]
        assert rest["exhausted_hits"] == 1 and rest["rate_limited"] == 1
        assert [m["content"] for m in fake.bot_messages(fake.channel_id)] == ["1", "2", "4"]
        assert fake.requests(route="POST /channels/{channel_id}/messages")[2]["rate_limited"]


def test_global_rate_limit():
    from fakediscord.harness import FakeDiscord
    with FakeDiscord({"global_limit": 3, "global_window": 1.0}) as fake:
        async def go():
            async with aiohttp.ClientSession() as s:
                r = Rest(fake, s)
                for p in ("/users/@me", "/gateway/bot", "/channels/%s" % fake.channel_id):
                    assert (await r.req("GET", p))[0] == 200
                st, body, h = await r.req("GET", "/channels/%s" % fake.thread_id)
                assert st == 429 and body["global"] is True and isinstance(body["retry_after"], float)
                assert h["X-RateLimit-Global"] == "true" and h["X-RateLimit-Scope"] == "global"
                # interaction callbacks are exempt from the global limit
                it = fake.slash("ask")
                st, _, _ = await r.req("POST", "/interactions/%s/%s/callback" % (it["id"], it["token"]),
                                       {"type": 4, "data": {"content": "ok"}})
                assert st == 204
                await asyncio.sleep(body["retry_after"])
                assert (await r.req("GET", "/users/@me"))[0] == 200
        run(go())
        assert fake.state()["rest"]["global_rate_limited"] == 1


@pytest.mark.fake_discord(scenario={})
def test_injected_429_500_502_and_early_retry_counted(fake_discord):
    fake = fake_discord
    route = "POST /channels/{channel_id}/messages"
    path = "/channels/%s/messages" % fake.channel_id
    fake.fail(route, 429, retry_after=1.0, scope="shared")
    fake.fail(route, 500, times=2)
    fake.fail(route, 502)

    async def go():
        async with aiohttp.ClientSession() as s:
            r = Rest(fake, s)
            st, body, h = await r.req("POST", path, {"content": "x"})
            assert st == 429 and body["retry_after"] == 1.0 and h["X-RateLimit-Scope"] == "shared"
            st, _, _ = await r.req("POST", path, {"content": "x"})  # too early: the ms/s bug
            assert st == 429
            await asyncio.sleep(1.0)
            statuses = [(await r.req("POST", path, {"content": "x"}))[0] for _ in range(3)]
            assert statuses == [500, 500, 502]
            st, body, _ = await r.req("POST", path, {"content": "x"})
            assert st == 200
    run(go())
    rest = fake.state()["rest"]
    assert rest["early_retries"] == 1 and rest["exhausted_hits"] == 1 and rest["injected"] == 4
    assert len(fake.bot_messages()) == 1


@pytest.mark.fake_discord(scenario={})
def test_global_429_injection_pauses_every_route(fake_discord):
    fake = fake_discord
    fake.fail("GET /users/@me", 429, retry_after=1.0, **{"global": True})

    async def go():
        async with aiohttp.ClientSession() as s:
            r = Rest(fake, s)
            st, body, h = await r.req("GET", "/users/@me")
            assert st == 429 and body["global"] and h["X-RateLimit-Global"] == "true"
            st, _, _ = await r.req("POST", "/channels/%s/typing" % fake.channel_id)
            assert st == 429  # another route, during the global pause
            await asyncio.sleep(1.0)
            st, _, _ = await r.req("POST", "/channels/%s/typing" % fake.channel_id)
            assert st == 204
    run(go())
    assert fake.state()["rest"]["exhausted_hits"] == 1


@pytest.mark.fake_discord(scenario=NO_LIMITS)
def test_delay_after_processing_and_enforce_nonce(fake_discord):
    fake = fake_discord
    path = "/channels/%s/messages" % fake.channel_id
    fake.fail("POST /channels/{channel_id}/messages", status=None, delay=1.0)
    body = {"content": "once", "nonce": "abc123", "enforce_nonce": True}

    async def go():
        async with aiohttp.ClientSession() as s:
            r = Rest(fake, s)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(r.req("POST", path, body), 0.3)  # ambiguous: it did post
            fake.wait_until(lambda: fake.bot_messages(), what="first post processed")
            st, m, _ = await r.req("POST", path, body)  # the retry
            assert st == 200 and m["content"] == "once" and m["nonce"] == "abc123"
            st, m2, _ = await r.req("POST", path, dict(body, nonce="other"))
            assert st == 200 and m2["id"] != m["id"]
            st, m3, _ = await r.req("POST", path, {"content": "dup", "nonce": "other"})
            assert st == 200 and m3["id"] != m2["id"]  # without enforce_nonce nothing is deduplicated
            return m
    m = run(go())
    msgs = fake.bot_messages()
    assert [x["content"] for x in msgs] == ["once", "once", "dup"] and msgs[0]["id"] == m["id"]
    assert fake.state()["rest"]["nonce_dedup"] == 1


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 250, "heartbeat_timeout_code": 0})
def test_interactions_slash_defer_followup_and_timeouts(fake_discord):
    fake = fake_discord
    from fakediscord.client import Gateway

    async def go():
        async with aiohttp.ClientSession() as s:
            r = Rest(fake, s)
            gw = await Gateway(fake, s).connect()
            await gw.ready()
            await gw.recv_until(lambda p: p.get("t") == "GUILD_CREATE")
            it = fake.slash("ask", {"prompt": "what is up", "ephemeral": True}, roles=[fake.role_id])
            p = await gw.recv()
            d = p["d"]
            assert p["t"] == "INTERACTION_CREATE" and d["type"] == 2 and d["id"] == it["id"]
            assert d["token"] == it["token"] and d["application_id"] == fake.application_id
            assert d["data"]["name"] == "ask" and d["data"]["options"] == [
                {"name": "prompt", "type": 3, "value": "what is up"},
                {"name": "ephemeral", "type": 5, "value": True}]
            assert d["member"]["user"]["id"] == fake.user_id and d["member"]["roles"] == [fake.role_id]
            cb = "/interactions/%s/%s/callback" % (it["id"], it["token"])
            st, body, _ = await r.req("POST", "/interactions/%s/wrongtoken/callback" % it["id"], {"type": 5})
            assert st == 404 and body["code"] == 10062
            st, body, _ = await r.req("POST", "/webhooks/%s/%s" % (fake.application_id, it["token"]),
                                      {"content": "too early"})
            assert st == 404 and body["code"] == 10015  # no webhook before the first callback
            st, body, _ = await r.req("POST", cb, {"type": 5}, auth=False)  # no Authorization needed
            assert st == 204 and body is None
            st, body, _ = await r.req("POST", cb, {"type": 4, "data": {"content": "again"}})
            assert st == 400 and body == {"message": "Interaction has already been acknowledged.", "code": 40060}
            orig = "/webhooks/%s/%s/messages/@original" % (fake.application_id, it["token"])
            st, m, _ = await r.req("PATCH", orig, {"content": "the answer"})
            assert st == 200 and m["content"] == "the answer" and not m["flags"] & 128
            st, f, _ = await r.req("POST", "/webhooks/%s/%s" % (fake.application_id, it["token"]),
                                   {"content": "more", "flags": 64})
            assert st == 200 and f["flags"] == 64
            st, f2, _ = await r.req("PATCH", "/webhooks/%s/%s/messages/%s" % (fake.application_id, it["token"], f["id"]),
                                    {"content": "more, edited"})
            assert st == 200 and f2["content"] == "more, edited"
            st, body, _ = await r.req("POST", "/webhooks/%s/%s" % (fake.application_id, it["token"]), {"content": "x" * 2001})
            assert st == 400 and body["code"] == 50035
            # DM slash: user instead of member
            it2 = fake.slash("ask", channel="dm")
            p = await gw.recv_until(lambda p: p.get("t") == "INTERACTION_CREATE")
            assert p["d"]["user"]["id"] == fake.user_id and "member" not in p["d"]
            # too late: shrink the windows (3 s and 15 min by default) below the interactions' age
            fake.configure(interaction_callback_timeout=0.2, interaction_token_ttl=0.2)
            fake.wait_until(lambda: all(it["age"] > 0.25 for it in fake.interactions()), what="age")
            st, body, _ = await r.req("POST", "/interactions/%s/%s/callback" % (it2["id"], it2["token"]),
                                      {"type": 4, "data": {"content": "late"}})
            assert st == 404 and body == {"message": "Unknown interaction", "code": 10062}
            st, body, _ = await r.req("POST", "/webhooks/%s/%s" % (fake.application_id, it["token"]), {"content": "too late"})
            assert st == 401 and body == {"message": "Invalid Webhook Token", "code": 50027}
            fake.configure(expired_token_code=10062)
            st, body, _ = await r.req("PATCH", orig, {"content": "too late"})
            assert st == 404 and body["code"] == 10062
    run(go())
    msgs = fake.bot_messages(fake.channel_id)
    assert [m["content"] for m in msgs] == ["the answer", "more, edited"]
    assert [m["via"] for m in msgs] == ["callback", "followup"]
    responses = fake.interaction_responses()
    assert [(x["kind"], x["status"]) for x in responses] == [
        ("callback", 404), ("followup", 404), ("callback", 204), ("callback", 400), ("edit", 200), ("followup", 200),
        ("edit", 200), ("followup", 400), ("callback", 404), ("followup", 401), ("edit", 404)]


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 250, "heartbeat_timeout_code": 0})
def test_button_click_and_update_message(fake_discord):
    fake = fake_discord
    from fakediscord.client import Gateway

    async def go():
        async with aiohttp.ClientSession() as s:
            r = Rest(fake, s)
            gw = await Gateway(fake, s).connect()
            await gw.ready()
            st, m, _ = await r.post_message(fake.channel_id, {"content": "Session running", "components": [
                {"type": 1, "components": [{"type": 2, "style": 4, "label": "Reset", "custom_id": "reset:1"}]}]})
            assert st == 200
            own = await gw.recv_until(lambda p: p.get("t") == "MESSAGE_CREATE")
            assert own["d"]["author"]["id"] == fake.bot_id  # the bot sees its own messages
            it = fake.click("reset:1", user_id=fake.other_user_id)
            p = await gw.recv_until(lambda p: p.get("t") == "INTERACTION_CREATE")
            d = p["d"]
            assert d["type"] == 3 and d["data"] == {"custom_id": "reset:1", "component_type": 2}
            assert d["message"]["id"] == m["id"] and d["member"]["user"]["id"] == fake.other_user_id
            st, _, _ = await r.req("POST", "/interactions/%s/%s/callback" % (it["id"], it["token"]),
                                   {"type": 7, "data": {"content": "Session reset.", "components": []}})
            assert st == 204
            upd = await gw.recv_until(lambda p: p.get("t") == "MESSAGE_UPDATE")
            assert upd["d"]["content"] == "Session reset." and upd["d"]["components"] == []
    run(go())
    msg = fake.bot_messages(fake.channel_id)[0]
    assert msg["content"] == "Session reset." and msg["history"][0]["content"] == "Session running"
    with pytest.raises(Exception):
        fake.click("reset:1")  # the button is gone


@pytest.mark.fake_discord(scenario=NO_LIMITS)
def test_bulk_overwrite_commands(fake_discord):
    fake = fake_discord
    cmd = {"name": "ask", "type": 1, "description": "Ask Claude", "options": [
        {"type": 3, "name": "prompt", "description": "what to ask", "required": True},
        {"type": 3, "name": "model", "description": "which model", "choices": [{"name": "a", "value": "a"}]}]}
    st, out, _ = rest_call(fake, "PUT", "/applications/%s/commands" % fake.application_id, [cmd])
    assert st == 200 and out[0]["name"] == "ask" and out[0]["id"] and out[0]["application_id"] == fake.application_id
    st, out2, _ = rest_call(fake, "PUT", "/applications/%s/commands" % fake.application_id, [cmd])
    assert out2[0]["id"] == out[0]["id"]  # same name keeps its id
    st, g, _ = rest_call(fake, "PUT", "/applications/%s/guilds/%s/commands" % (fake.application_id, fake.guild_id),
                         [dict(cmd, name="reset", options=[])])
    assert st == 200 and g[0]["guild_id"] == fake.guild_id
    st, body, _ = rest_call(fake, "PUT", "/applications/%s/guilds/1/commands" % fake.application_id, [])
    assert st == 404 and body["code"] == 10004
    st, body, _ = rest_call(fake, "PUT", "/applications/%s/commands" % fake.application_id, [dict(cmd, name="Ask")])
    assert st == 400 and _form_error(body, "0", "name") == "APPLICATION_COMMAND_INVALID_NAME"
    st, body, _ = rest_call(fake, "PUT", "/applications/%s/commands" % fake.application_id, [dict(cmd, description="")])
    assert st == 400
    bad_opts = [{"type": 3, "name": "a", "description": "d"}, {"type": 3, "name": "b", "description": "d", "required": True}]
    st, body, _ = rest_call(fake, "PUT", "/applications/%s/commands" % fake.application_id, [dict(cmd, options=bad_opts)])
    assert st == 400
    st, body, _ = rest_call(fake, "PUT", "/applications/%s/commands" % fake.application_id, {"name": "x"})
    assert st == 400
    st, body, _ = rest_call(fake, "PUT", "/applications/999/commands", [cmd])
    assert st == 403
    st, cur, _ = rest_call(fake, "GET", "/applications/%s/commands" % fake.application_id)
    assert [c["name"] for c in cur] == ["ask"]
    reg = fake.commands()
    assert [c["name"] for c in reg["current"]["global"]] == ["ask"]
    assert [c["name"] for c in reg["current"][fake.guild_id]] == ["reset"]
    assert len(reg["puts"]) == 3
    assert fake.slash("ask", {"prompt": "x"})["registered"] is True
    assert fake.slash("nope")["registered"] is False


@pytest.mark.fake_discord(scenario=NO_LIMITS)
def test_processed_then_500_is_ambiguous(fake_discord):
    fake = fake_discord
    fake.fail("POST /channels/{channel_id}/messages", 500, when="after")
    st, body, _ = rest_call(fake, "POST", "/channels/%s/messages" % fake.channel_id, {"content": "posted"})
    assert st == 500 and body == {"message": "500: Internal Server Error", "code": 0}
    assert [m["content"] for m in fake.bot_messages()] == ["posted"]  # it happened anyway
    assert fake.requests()[-1]["injected"] == 500


@pytest.mark.fake_discord(scenario=NO_LIMITS)
def test_deferred_update_then_original_edits_the_component_message(fake_discord):
    fake = fake_discord
    st, m, _ = rest_call(fake, "POST", "/channels/%s/messages" % fake.channel_id, {
        "content": "pick", "components": [{"type": 1, "components": [
            {"type": 2, "style": 1, "label": "A", "custom_id": "a"}]}]})
    it = fake.click("a")
    st, _, _ = rest_call(fake, "POST", "/interactions/%s/%s/callback" % (it["id"], it["token"]), {"type": 6})
    assert st == 204
    st, e, _ = rest_call(fake, "PATCH", "/webhooks/%s/%s/messages/@original" % (fake.application_id, it["token"]),
                         {"content": "picked A", "components": []})
    assert st == 200 and e["id"] == m["id"]
    assert fake.bot_messages()[0]["content"] == "picked A"
    # with_response=true returns the callback's resource
    it2 = fake.slash("ask")
    st, body, _ = rest_call(fake, "POST", "/interactions/%s/%s/callback?with_response=true" % (it2["id"], it2["token"]),
                            {"type": 4, "data": {"content": "hi", "flags": 64}})
    assert st == 200 and body["resource"]["message"]["content"] == "hi"
    assert body["interaction"]["response_message_ephemeral"] is True


def test_too_many_invalid_requests_get_banned():
    from fakediscord.harness import FakeDiscord
    with FakeDiscord({"invalid_request_limit": 3, "ban_seconds": 0.5}) as fake:
        for _ in range(4):
            assert rest_call(fake, "GET", "/users/@me", auth="Bot wrong")[0] == 401
        st, body, h = rest_call(fake, "GET", "/users/@me")
        assert st == 429 and body == "error code: 1015" and "X-RateLimit-Limit" not in h
        fake.wait_until(lambda: rest_call(fake, "GET", "/users/@me")[0] == 200, timeout=5, what="ban lifted")
        assert fake.state()["rest"]["banned_requests"] >= 1


@pytest.mark.fake_discord(scenario=NO_LIMITS)
def test_small_routes_dm_channel_get_and_webhook_get_delete(fake_discord):
    fake = fake_discord
    st, dm, _ = rest_call(fake, "POST", "/users/@me/channels", {"recipient_id": fake.other_user_id})
    assert st == 200 and dm["type"] == 1 and dm["recipients"][0]["id"] == fake.other_user_id
    st, dm2, _ = rest_call(fake, "POST", "/users/@me/channels", {"recipient_id": fake.other_user_id})
    assert dm2["id"] == dm["id"]
    st, ch, _ = rest_call(fake, "GET", "/channels/%s" % fake.thread_id)
    assert st == 200 and ch["type"] == 11 and ch["parent_id"] == fake.channel_id
    st, m, _ = rest_call(fake, "POST", "/channels/%s/messages" % dm["id"], {"content": "psst"})
    st, got, _ = rest_call(fake, "GET", "/channels/%s/messages/%s" % (dm["id"], m["id"]))
    assert st == 200 and got["content"] == "psst"
    it = fake.slash("ask", channel="dm", user_id=fake.other_user_id)
    assert it["payload"]["channel_id"] == dm["id"]
    rest_call(fake, "POST", "/interactions/%s/%s/callback" % (it["id"], it["token"]), {"type": 4, "data": {"content": "a"}})
    orig = "/webhooks/%s/%s/messages/@original" % (fake.application_id, it["token"])
    st, o, _ = rest_call(fake, "GET", orig)
    assert st == 200 and o["content"] == "a"
    st, _, _ = rest_call(fake, "DELETE", orig)
    assert st == 204
    st, _, _ = rest_call(fake, "GET", orig)
    assert st == 404
    st, body, _ = rest_call(fake, "POST", "/webhooks/%s/%s" % ("42", it["token"]), {"content": "x"})
    assert st == 404 and body["code"] == 10015
    assert fake.deletions()[-1]["via"] == "webhook"
    assert fake.dispatch("TYPING_START", {"channel_id": fake.channel_id})["sessions"] == 0  # nobody connected
