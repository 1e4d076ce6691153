"""The gateway inside the real executable, against the fake Discord over TLS: what an
operator sees at a fatal close code, across a reload, and when the bot leaves."""
import os
import signal
import time

import pytest

from botproc import REPO, BotProcess


def config(tmp_path, fake):
    s = fake.settings()
    path = tmp_path / "config.lua"
    path.write_text("""return {
  discord = { token = env "DISCORD_TOKEN", api_url = %r, gateway_url = %r, ca_file = %r },
  state_dir = %r,
  bot_file = %r,
}
""" % (s["api_url"], s["gateway_url"], s["ca_file"], str(tmp_path / "state"), os.path.join(REPO, "bot.lua")))
    return str(path)


def start(tmp_path, fake):
    return BotProcess(["--config", config(tmp_path, fake)], env={"DISCORD_TOKEN": fake.token})


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000, "allowed_intents": []}, tls=True)
def test_disallowed_intents_exit_1_with_the_portal_fix(fake_discord, tmp_path):
    t0 = time.monotonic()
    bot = start(tmp_path, fake_discord)
    try:
        assert bot.wait_exit(10) == 1
        assert time.monotonic() - t0 < 5
        assert "MESSAGE_CONTENT" in bot.stderr and "Developer Portal" in bot.stderr
        assert len(fake_discord.connections()) == 1  # no reconnect loop
    finally:
        bot.kill()


@pytest.mark.fake_discord(scenario={"heartbeat_interval": 1000}, tls=True)
def test_reload_keeps_the_websocket_and_shutdown_closes_with_1000(fake_discord, tmp_path):
    fake = fake_discord
    bot = start(tmp_path, fake)
    try:
        fake.wait_until(lambda: fake.state()["gateway"]["identify"] == 1, what="identify")
        bot.wait_stderr("ready as")
        bot.signal(signal.SIGHUP)
        bot.wait_stderr("reloaded")
        acks = fake.state()["gateway"]["heartbeat_acks"]
        fake.wait_until(lambda: fake.state()["gateway"]["heartbeat_acks"] >= acks + 2,
                        what="heartbeats after the reload")
        conns = fake.connections()
        assert len(conns) == 1 and conns[0]["closed"] is None, conns
        bot.signal(signal.SIGTERM)
        assert bot.wait_exit(15) == 0
        conn = fake.connections()[0]
        assert conn["closed_by"] == "client" and conn["close_code"] == 1000, conn
        assert fake.state()["gateway"]["identify"] == 1
    finally:
        bot.kill()
