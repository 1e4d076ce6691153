"""The executable itself: usage, --check, reload, shutdown, secrecy of the token."""
import os
import signal
import textwrap
import time

import pytest

from botproc import BotProcess, REPO, run

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.secret-token-value"


def write(path, text):
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def deployment(tmp_path):
    """A config and a bot file in a scratch directory."""
    def make(bot_source, grace=2):
        write(tmp_path / "bot.lua", bot_source)
        return write(tmp_path / "config.lua", f"""\
            return {{
              discord = {{ token = env "DISCORD_TOKEN" }},
              limits = {{ shutdown_grace = {grace} }},
              state_dir = "{tmp_path}/state",
            }}
            """)
    return make


ECHO_BOT = """\
    local bot = require "coordinator.bot"
    bot.on("message", function(msg) msg:reply("%s: " .. msg.content) end)
    """


def test_version_and_help():
    code, out, _ = run(["--version"])
    assert code == 0 and out.startswith("claude-coordinator ")
    code, out, _ = run(["--help"])
    assert code == 0 and "--console" in out
    code, _, err = run(["--bogus"])
    assert code == 2 and "usage:" in err
    code, _, err = run(["--log-level", "loud"])
    assert code == 2 and "--log-level" in err


def test_check_shipped_config_with_token():
    code, out, err = run(["--check", "--config", os.path.join(REPO, "config.lua")], env={"DISCORD_TOKEN": TOKEN})
    assert code == 0, err
    assert "OK" in out


def test_check_without_token_is_a_config_error():
    code, _, err = run(["--check", "--config", os.path.join(REPO, "config.lua")])
    assert code == 2
    assert "config.lua: discord.token: required, but missing" in err


def test_check_reports_each_bad_key(tmp_path):
    cfg = write(tmp_path / "config.lua", """\
        return {
          discord = { token = "abc-token-1", intents = 7 },
          claude = { timeout = "soon" },
          nonsense = true,
        }
        """)
    code, _, err = run(["--check", "--config", cfg])
    assert code == 2
    lines = err.strip().splitlines()
    assert "config.lua: nonsense: unknown key" in lines
    assert "config.lua: claude.timeout: expected a number, got string" in lines
    assert any(line.startswith("config.lua: discord.intents: expected a list of") and line.endswith("got number")
               for line in lines)


def test_check_reports_a_broken_bot_file(deployment):
    cfg = deployment("local bot = require 'coordinator.bot'\nbot.on('message', function() end\n")
    code, _, err = run(["--check", "--config", cfg], env={"DISCORD_TOKEN": TOKEN})
    assert code == 2
    assert "bot.lua:" in err


def test_check_reports_undefined_globals_in_bot_file(deployment):
    cfg = deployment("local x = undefined_thing\n")
    code, _, err = run(["--check", "--config", cfg], env={"DISCORD_TOKEN": TOKEN})
    assert code == 2
    assert "undefined name 'undefined_thing'" in err


def test_sighup_with_broken_bot_keeps_old_handlers(deployment, tmp_path):
    cfg = deployment(ECHO_BOT % "v1")
    bot = BotProcess(["--console", "--config", cfg])
    try:
        bot.wait_stderr("console mode")
        bot.send("one")
        bot.wait_stdout("v1: one")

        write(tmp_path / "bot.lua", "this is not lua (\n")
        bot.signal(signal.SIGHUP)
        bot.wait_stderr("reload failed")
        bot.send("two")
        bot.wait_stdout("v1: two")

        write(tmp_path / "bot.lua", ECHO_BOT % "v2")
        bot.signal(signal.SIGHUP)
        bot.wait_stderr("reloaded")
        bot.send("three")
        bot.wait_stdout("v2: three")
        assert "v1: three" not in bot.stdout
    finally:
        bot.kill()


def test_sigterm_lets_running_work_finish_and_exits_0(deployment):
    cfg = deployment("""\
        local core = require "core"
        local bot = require "coordinator.bot"
        bot.on("message", function(msg)
          msg:reply("started " .. msg.content)
          core.sleep(0.5)
          msg:reply("finished " .. msg.content)
        end)
        """)
    bot = BotProcess(["--console", "--config", cfg])
    try:
        bot.send("job")
        bot.wait_stdout("started job")
        bot.signal(signal.SIGTERM)
        assert bot.wait_exit(5) == 0
        assert "finished job" in bot.stdout
    finally:
        bot.kill()


def test_sigterm_cancels_work_that_outlives_the_grace_period(deployment):
    cfg = deployment("""\
        local core = require "core"
        local bot = require "coordinator.bot"
        bot.on("message", function(msg)
          local guard <close> = setmetatable({}, { __close = function() io.stdout:write("released\\n") end })
          msg:reply("started")
          core.sleep(120)
          msg:reply("never")
        end)
        """)
    bot = BotProcess(["--console", "--config", cfg])
    try:
        bot.send("job")
        bot.wait_stdout("started")
        t0 = time.monotonic()
        bot.signal(signal.SIGTERM)
        assert bot.wait_exit(6) == 0
        assert time.monotonic() - t0 < 4.5  # grace 2 s, then cancel
        assert "released" in bot.stdout and "never" not in bot.stdout
    finally:
        bot.kill()


def test_second_sigint_exits_at_once(deployment):
    cfg = deployment("""\
        local core = require "core"
        local bot = require "coordinator.bot"
        bot.on("message", function(msg) msg:reply("started") core.sleep(120) end)
        """, grace=60)
    bot = BotProcess(["--console", "--config", cfg])
    try:
        bot.send("job")
        bot.wait_stdout("started")
        bot.signal(signal.SIGINT)
        bot.wait_stderr("shutting down")
        bot.signal(signal.SIGINT)
        assert bot.wait_exit(3) == 1
    finally:
        bot.kill()


def test_token_never_appears_in_logs(deployment):
    cfg = deployment("""\
        local core = require "core"
        local bot = require "coordinator.bot"
        bot.on("message", function(msg)
          core.log.debug("bot", "config token is " .. tostring(bot.config().discord.token))
          msg:reply("ok")
        end)
        """)
    env = {"DISCORD_TOKEN": TOKEN}
    code, out, err = run(["--check", "--log-level", "debug", "--config", cfg], env=env)
    assert code == 0 and TOKEN not in out + err
    bot = BotProcess(["--console", "--log-level", "debug", "--config", cfg], env=env)
    try:
        bot.send("hi")
        bot.wait_stdout("ok")
        bot.wait_stderr("config token is [redacted]")
        bot.close_stdin()
        assert bot.wait_exit(5) == 0
        assert TOKEN not in bot.stderr and TOKEN not in bot.stdout
    finally:
        bot.kill()
