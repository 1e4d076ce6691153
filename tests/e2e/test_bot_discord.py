"""bot.lua end to end on Discord: the real binary, the fake Discord (TLS), the fake claude.
Each test asserts what a user of the channel would see."""
import os
import re
import signal
import time

import pytest

from discordbot import DiscordBot, REPO, SECOND_CHANNEL_ID, OPEN_CHANNEL_ID


@pytest.fixture
def env(tmp_path):
    with DiscordBot(tmp_path) as e:
        e.wait_ready()
        yield e


def wait_texts(env, channel_id, pred, what, timeout=15):
    return env.fake.wait_until(lambda: pred(env.bot_texts(channel_id)), timeout=timeout, what=what)


def test_mention_gets_a_chunked_reply_with_fences_intact(env):
    posted = env.fake.post_message("show me [code]", mention_bot=True)
    wait_texts(env, env.fake.channel_id, lambda t: any("step 060" in x for x in t), "the last chunk")
    msgs = env.fake.bot_messages(env.fake.channel_id)
    assert len(msgs) >= 3
    for m in msgs:
        assert len(m["content"]) <= 2000
        assert m["content"].count("```") % 2 == 0
    creates = env.fake.requests(route="POST /channels/{channel_id}/messages")
    first = creates[0]["body"]
    assert first["message_reference"]["message_id"] == posted["id"]
    assert first["message_reference"]["fail_if_not_exists"] is False
    for r in creates:
        assert r["body"]["allowed_mentions"] == {"parse": []}
    assert env.fake.typing(), "the typing indicator was shown"


def test_an_empty_mention_gets_a_one_line_help(env):
    env.fake.post_message("", mention_bot=True)
    m = env.fake.wait_for_bot_message(env.fake.channel_id)
    assert m["content"].startswith("Mention me with what you want done")
    assert env.invocations() == []


def test_messages_without_a_mention_are_ignored_but_an_all_channel_answers(env):
    env.fake.post_message("just chatting")
    env.fake.post_message("chatting here too", channel_id=SECOND_CHANNEL_ID)
    wait_texts(env, SECOND_CHANNEL_ID, lambda t: any("chatting here too" in x for x in t), "the all channel")
    assert env.bot_texts(env.fake.channel_id) == []
    assert len(env.invocations()) == 1


def test_second_mention_resumes_also_after_kill_9(env):
    env.fake.post_message("one", mention_bot=True)
    wait_texts(env, None, lambda t: any("msgs=2" in x for x in t), "first answer")
    env.fake.post_message("two", mention_bot=True)
    wait_texts(env, None, lambda t: any("msgs=4" in x for x in t), "resumed answer")
    env.bot.signal(signal.SIGKILL)
    env.bot.wait_exit(5)
    env.start()
    env.fake.wait_ready(identifies=2)
    env.fake.post_message("three", mention_bot=True)
    wait_texts(env, None, lambda t: any("msgs=6" in x for x in t), "answer after restart")


def test_channels_run_in_parallel_and_one_channel_in_order(env):
    t0 = time.monotonic()
    env.fake.post_message("a [slow 2]", mention_bot=True)
    env.fake.post_message("x [slow 2]", channel_id=SECOND_CHANNEL_ID)
    env.fake.post_message("b", mention_bot=True)
    env.fake.post_message("c", mention_bot=True)
    wait_texts(env, env.fake.channel_id, lambda t: any("]: c" in x for x in t), "the third message")
    wait_texts(env, SECOND_CHANNEL_ID, lambda t: any("]: x" in x for x in t), "the other channel")
    elapsed = time.monotonic() - t0
    assert elapsed < 3.8, f"two 2 s turns in two channels took {elapsed:.1f} s"
    texts = env.bot_texts()
    assert "Queued — 1 ahead of you." in texts and "Queued — 2 ahead of you." in texts
    answered = [m.group(1) for m in (re.search(r"\]: ([abc])\b", t) for t in texts) if m]
    assert answered == ["a", "b", "c"]


def test_queue_bound_says_busy(env):
    env.fake.post_message("first [slow 2]", mention_bot=True)
    for word in ("q1", "q2", "q3"):
        env.fake.post_message(word, mention_bot=True)
    wait_texts(env, None, lambda t: any("This channel is busy" in x for x in t), "the busy notice")
    wait_texts(env, None, lambda t: any("]: q2" in x for x in t), "the queued ones")
    assert not any("]: q3" in x for x in env.bot_texts())


def test_reset_only_by_the_requester(env):
    env.fake.post_message("remember", mention_bot=True)
    wait_texts(env, None, lambda t: any("msgs=2" in x for x in t), "first answer")
    env.fake.slash("reset")
    env.fake.wait_until(lambda: any(r["type"] == 4 and r["body"]["data"].get("components")
                                    for r in env.fake.interaction_responses()), what="the question")
    question = [r for r in env.fake.interaction_responses() if r["type"] == 4][-1]
    confirm = question["body"]["data"]["components"][0]["components"][0]["custom_id"]
    env.fake.click(confirm, user_id=env.fake.other_user_id)
    env.fake.wait_until(lambda: any("Not yours" in (r["body"].get("data") or {}).get("content", "")
                                    for r in env.fake.interaction_responses()), what="not yours")
    stranger = [r for r in env.fake.interaction_responses()
                if "Not yours" in (r["body"].get("data") or {}).get("content", "")][0]
    assert stranger["body"]["data"]["flags"] & 64
    env.fake.click(confirm, user_id=env.fake.user_id)
    env.fake.wait_until(lambda: any(r["type"] == 7 and "Session reset by" in r["body"]["data"]["content"]
                                    for r in env.fake.interaction_responses()), what="reset")
    env.fake.post_message("fresh", mention_bot=True)
    wait_texts(env, None, lambda t: any("msgs=2,model=claude-opus-4-8]: fresh" in x for x in t), "fresh session")


def test_reset_buttons_expire(tmp_path):
    source = open(os.path.join(REPO, "bot.lua")).read()
    short = tmp_path / "bot.lua"
    short.write_text(source.replace("local CONFIRM_FOR = 60", "local CONFIRM_FOR = 1"))
    with DiscordBot(tmp_path, bot_file=str(short)) as env:
        env.wait_ready()
        env.fake.slash("reset")
        edit = env.fake.wait_until(lambda: [r for r in env.fake.interaction_responses() if r["kind"] == "edit"],
                                   what="the expiry edit")[0]
        assert "not confirmed in time" in edit["body"]["content"]
        buttons = edit["body"]["components"][0]["components"]
        assert all(b["disabled"] for b in buttons)


def test_status_embed(env):
    env.fake.post_message("hi", mention_bot=True)
    wait_texts(env, None, lambda t: t, "an answer")
    env.fake.wait_until(lambda: env.fake.state()["gateway"]["heartbeat_acks"] >= 1, what="a heartbeat ACK")
    env.fake.slash("status")
    r = env.fake.wait_until(lambda: [r for r in env.fake.interaction_responses() if r["type"] == 4],
                            what="status")[0]
    embed = r["body"]["data"]["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["State"] == "idle"
    assert fields["Turns"] == "1"
    assert fields["Project"] == "`%s`" % env.projects[env.fake.channel_id]
    assert re.match(r"<t:\d+:R>", fields["Last activity"])
    assert re.match(r"\d+ ms", fields["Gateway latency"])
    assert len(fields["Session"]) == 8
    assert r["elapsed"] < 3


def test_model_choices_registered_and_used(env):
    cmds = {c["name"]: c for c in env.fake.commands()["current"][env.fake.guild_id]}
    assert set(cmds) == {"status", "model", "stop", "reset"}
    choices = cmds["model"]["options"][0]["choices"]
    assert [c["value"] for c in choices] == ["sonnet", "opus"]
    env.fake.slash("model", {"name": "sonnet"})
    env.fake.wait_until(lambda: env.fake.interaction_responses(), what="model answer")
    env.fake.post_message("which", mention_bot=True)
    wait_texts(env, None, lambda t: any("model=sonnet]: which" in x for x in t), "the turn on sonnet")
    argv = env.invocations()[-1]["argv"]
    assert argv[argv.index("--model") + 1] == "sonnet"


def test_commands_are_not_registered_again_when_unchanged(env):
    puts = len(env.fake.commands()["puts"])
    env.bot.signal(signal.SIGTERM)
    assert env.bot.wait_exit(10) == 0
    env.start()
    env.fake.wait_ready(identifies=2)
    env.fake.post_message("ping", mention_bot=True)
    wait_texts(env, None, lambda t: t, "an answer after restart")
    assert len(env.fake.commands()["puts"]) == puts


def test_stop_ends_a_slow_turn_with_no_process_left(env):
    env.fake.post_message("long [slow 30]", mention_bot=True)
    env.fake.wait_until(lambda: env.invocations(), what="claude started")
    env.fake.slash("stop")
    wait_texts(env, None, lambda t: any("Stopped by <@%s>." % env.fake.user_id in x for x in t), "stopped")
    pid = env.invocations()[0]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_api_error_reaches_the_user(env):
    env.fake.post_message("[api-error 429]", mention_bot=True)
    wait_texts(env, None, lambda t: any(x.startswith("Claude could not answer: API Error: Request rejected (429)")
                                        for x in t), "the API error")


def test_unauthorized_user_is_told_once(env):
    for _ in range(2):
        env.fake.post_message("let me in", channel_id=OPEN_CHANNEL_ID, user_id=env.fake.other_user_id,
                              mention_bot=True)
    env.fake.post_message("me too", channel_id=OPEN_CHANNEL_ID, mention_bot=True)
    wait_texts(env, OPEN_CHANNEL_ID, lambda t: any("]: me too" in x for x in t), "the allowed user's answer")
    texts = env.bot_texts(OPEN_CHANNEL_ID)
    assert texts.count("Sorry, you are not allowed to use me in this channel.") == 1
    assert all("let me in" not in r["argv"][-1] for r in env.invocations())


def test_long_reply_is_attached_as_a_file(env):
    env.fake.post_message("[huge 30k]", mention_bot=True)
    m = env.fake.wait_for_bot_message(env.fake.channel_id)
    assert "the whole reply is attached as reply.md" in m["content"]
    req = env.fake.requests(route="POST /channels/{channel_id}/messages")[0]
    parts = {p["name"]: p for p in req["multipart"]}
    assert parts["files[0]"]["filename"] == "reply.md"
    assert parts["files[0]"]["size"] == 30 * 1024


def test_everyone_in_claudes_text_does_not_ping(env):
    env.fake.post_message("[mention]", mention_bot=True)
    m = env.fake.wait_for_bot_message(env.fake.channel_id)
    assert "@everyone" in m["content"]
    req = env.fake.requests(route="POST /channels/{channel_id}/messages")[0]
    assert req["body"]["allowed_mentions"] == {"parse": []}


def test_child_environment_has_no_token(env):
    env.fake.post_message("[env]", mention_bot=True)
    m = env.fake.wait_for_bot_message(env.fake.channel_id)
    assert "PATH=" in m["content"]
    record = env.invocations()[0]
    assert "DISCORD_TOKEN" not in record["env"]
    assert env.token not in "".join(record["env"].values())


def test_thread_inherits_its_channel_and_has_its_own_session(env):
    env.fake.post_message("in channel", mention_bot=True)
    wait_texts(env, None, lambda t: t, "channel answer")
    env.fake.post_message("in thread", channel="thread", mention_bot=True)
    m = env.fake.wait_for_bot_message(env.fake.thread_id)
    assert "msgs=2" in m["content"]  # a session of its own
    runs = env.invocations()
    assert runs[1]["cwd"] == os.path.realpath(env.projects[env.fake.channel_id])


def test_dms_are_ignored_unless_enabled(env):
    env.fake.post_message("psst", channel="dm")
    env.fake.post_message("back in the channel", mention_bot=True)
    wait_texts(env, None, lambda t: t, "channel answer")
    assert env.fake.bot_messages(env.fake.dm_channel_id) == []


def test_sighup_changes_the_next_reply_on_the_same_connection(tmp_path):
    bot_file = tmp_path / "bot.lua"
    source = open(os.path.join(REPO, "bot.lua")).read()
    bot_file.write_text(source)
    with DiscordBot(tmp_path, bot_file=str(bot_file)) as env:
        env.wait_ready()
        env.fake.post_message("before", mention_bot=True)
        wait_texts(env, None, lambda t: any("]: before" in x for x in t), "first answer")
        bot_file.write_text(source.replace('local function deliver(msg, text)',
                                           'local function deliver(msg, text)\n  text = "v2: " .. text'))
        env.bot.signal(signal.SIGHUP)
        env.bot.wait_stderr("reloaded")
        env.fake.post_message("after", mention_bot=True)
        wait_texts(env, None, lambda t: any(x.startswith("v2: ") and "]: after" in x for x in t), "v2 answer")
        assert env.fake.state()["gateway"]["connections"] == 1


def test_bad_token_exits_1_at_start_up(tmp_path):
    env = DiscordBot(tmp_path)
    env.env["DISCORD_TOKEN"] = "wrong-token-value"
    try:
        env.start()
        assert env.bot.wait_exit(10) == 1
        assert "Discord rejected the bot token" in env.bot.stderr
        assert "wrong-token-value" not in env.bot.stderr
        assert env.fake.state()["gateway"]["connections"] == 0
    finally:
        env.stop()


def test_global_cap_on_concurrent_runs(tmp_path):
    with DiscordBot(tmp_path, limits="max_concurrent_runs = 1") as env:
        env.wait_ready()
        t0 = time.monotonic()
        env.fake.post_message("a [slow 1]", mention_bot=True)
        env.fake.post_message("x [slow 1]", channel_id=SECOND_CHANNEL_ID)
        wait_texts(env, env.fake.channel_id, lambda t: any("]: a" in x for x in t), "first channel")
        wait_texts(env, SECOND_CHANNEL_ID, lambda t: any("]: x" in x for x in t), "second channel")
        assert time.monotonic() - t0 >= 2.0, "one run at a time: the turns did not overlap"


def test_dms_are_served_when_enabled(tmp_path):
    dm_project = tmp_path / "dm-project"
    dm_project.mkdir()
    with DiscordBot(tmp_path, config_extra=f'access = {{ dms = true, dm_project = "{dm_project}" }},') as env:
        env.wait_ready()
        env.fake.post_message("hello in private", channel="dm")
        m = env.fake.wait_for_bot_message(env.fake.dm_channel_id)
        assert "]: hello in private" in m["content"]
        assert env.invocations()[0]["cwd"] == os.path.realpath(dm_project)


def test_a_slow_command_is_deferred_within_3_seconds(tmp_path):
    bot_file = tmp_path / "bot.lua"
    bot_file.write_text(open(os.path.join(REPO, "bot.lua")).read() + '''
bot.command {
  name = "slow",
  description = "answers after 3.5 s",
  run = function(ix) core.sleep(3.5) ix:reply("done slowly") end,
}
''')
    with DiscordBot(tmp_path, bot_file=str(bot_file)) as env:
        env.wait_ready()
        env.fake.slash("slow")
        edit = env.fake.wait_until(lambda: [r for r in env.fake.interaction_responses() if r["kind"] == "edit"],
                                   what="the answer")[0]
        assert edit["body"]["content"] == "done slowly"
        first = env.fake.interaction_responses()[0]
        assert first["type"] == 5 and first["status"] < 300 and first["elapsed"] < 3


def test_a_restart_with_resume_after_restart_loses_no_message(tmp_path):
    with DiscordBot(tmp_path, discord_extra="resume_after_restart = true,") as env:
        env.wait_ready()
        env.bot.signal(signal.SIGTERM)
        assert env.bot.wait_exit(10) == 0
        conn = env.fake.connections()[0]
        assert conn["close_code"] == 4000, conn
        env.fake.post_message("sent while the bot was down", mention_bot=True)
        env.start()
        env.fake.wait_resumed()
        m = env.fake.wait_for_bot_message(env.fake.channel_id)
        assert "]: sent while the bot was down" in m["content"]
        assert env.fake.state()["gateway"]["identify"] == 1


def test_no_identify_when_the_daily_session_budget_is_spent(tmp_path):
    with DiscordBot(tmp_path, scenario={"session_start_remaining": 0}) as env:
        env.bot.wait_stderr("no gateway session starts left today")
        env.bot.signal(signal.SIGTERM)
        assert env.bot.wait_exit(10) == 0
        assert env.fake.state()["gateway"]["connections"] == 0
