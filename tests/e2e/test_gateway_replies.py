"""What a user notices through a gateway fault: a message posted while the connection is
broken still gets exactly one reply. The real executable with bot.lua and the fake
claude, against the fake Discord over TLS with zlib-stream."""
import json
import os
import textwrap

import pytest

from botproc import REPO, BotProcess

FAKE_CLAUDE = os.path.join(REPO, "tests", "fakeclaude", "claude")


@pytest.fixture
def bot(fake_discord, tmp_path):
    fake = fake_discord
    s = fake.settings()
    project = tmp_path / "project"
    project.mkdir()
    cfg = tmp_path / "config.lua"
    cfg.write_text(textwrap.dedent(f"""\
        return {{
          discord = {{ token = env "DISCORD_TOKEN", api_url = {json.dumps(s["api_url"])},
                      gateway_url = {json.dumps(s["gateway_url"])}, ca_file = {json.dumps(s["ca_file"])},
                      compress = true }},
          claude = {{ command = {json.dumps(FAKE_CLAUDE)}, timeout = 30, kill_grace = 2 }},
          channels = {{ [{json.dumps(fake.channel_id)}] = {{ project = {json.dumps(str(project))} }} }},
          state_dir = {json.dumps(str(tmp_path / "state"))},
          bot_file = {json.dumps(os.path.join(REPO, "bot.lua"))},
        }}
        """))
    proc = BotProcess(["--config", str(cfg)], env={"DISCORD_TOKEN": fake.token, "HOME": str(tmp_path)})
    try:
        fake.wait_until(lambda: fake.state()["gateway"]["identify"] == 1, what="identify")
        proc.wait_stderr("ready as")
        yield proc
    finally:
        proc.kill()


def replies_to(fake, text):
    return [m for m in fake.bot_messages(fake.channel_id) if text in m["content"]]


def ask_and_expect_one_reply(fake, text):
    fake.post_message(text, mention_bot=True)
    fake.wait_until(lambda: replies_to(fake, text), timeout=20, what="a reply to %r" % text)
    return text


# Faults after which the session resumes: what was posted meanwhile is replayed.
FAULTS = {
    "close 4000": lambda fake: fake.close_gateway(4000),
    "TCP drop": lambda fake: fake.drop_gateway(),
    "op 7": lambda fake: fake.send_op(7),
    "op 9 resumable": lambda fake: fake.send_op(9, True),
}


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000, "fragment_size": 512}, tls=True)
def test_a_message_posted_during_each_fault_gets_exactly_one_reply(fake_discord, bot):
    fake = fake_discord
    asked = [ask_and_expect_one_reply(fake, "before any fault")]
    for name, fault in FAULTS.items():
        connections = len(fake.connections())
        fault(fake)
        text = "posted during %s" % name
        fake.post_message(text, mention_bot=True)
        asked.append(text)
        fake.wait_until(lambda: len(fake.connections()) > connections, timeout=15,
                        what="the reconnection after %s" % name)
        fake.wait_until(lambda: replies_to(fake, text), timeout=20, what="a reply to %r" % text)
    # op 9 false ends the session: Discord replays nothing across sessions, so what was
    # posted in the gap is gone for every client; the new session must work at once.
    fake.send_op(9, False)
    fake.wait_until(lambda: fake.state()["gateway"]["identify"] == 2, timeout=15, what="a new session")
    fake.wait_until(lambda: fake.state()["gateway"]["live"] == 1, what="the new session live")
    asked.append(ask_and_expect_one_reply(fake, "after a new session"))
    # every question answered once: no loss, no duplicate
    fake.wait_until(lambda: fake.state()["gateway"]["live"] == 1, what="one live connection")
    for text in asked:
        assert len(replies_to(fake, text)) == 1, (text, replies_to(fake, text))
    g = fake.state()["gateway"]
    assert g["resumed"] >= 4 and g["identify"] == 2, g  # only op 9 false started a new session
