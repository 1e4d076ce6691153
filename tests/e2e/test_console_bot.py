"""bot.lua end to end in console mode: the real binary, the fake claude, a pipe for stdin."""
import json
import os
import signal
import textwrap

import pytest

from botproc import BotProcess, REPO

FAKE_CLAUDE = os.path.join(REPO, "tests", "fakeclaude", "claude")


@pytest.fixture
def console(tmp_path):
    """Starts the bot in console mode; returns (bot, log_path, project)."""
    started = []

    def start(claude=FAKE_CLAUDE, project=None, extra="", timeout=30):
        project = project or str(tmp_path / "project")
        os.makedirs(project, exist_ok=True)
        log = tmp_path / "claude.log"
        cfg = tmp_path / "config.lua"
        cfg.write_text(textwrap.dedent(f"""\
            return {{
              claude = {{ command = {json.dumps(claude)}, models = {{ "sonnet", "opus" }},
                         timeout = {timeout}, kill_grace = 2,
                         env = {{ FAKE_CLAUDE_LOG = env "FAKE_CLAUDE_LOG" }} }},
              console = {{ project = {json.dumps(project)} }},
              state_dir = {json.dumps(str(tmp_path / "state"))},
              bot_file = {json.dumps(os.path.join(REPO, "bot.lua"))},
              reply = {{ max_chunks = 4 }},
              {extra}
            }}
            """))
        bot = BotProcess(["--console", "--config", str(cfg)],
                         env={"HOME": str(tmp_path), "FAKE_CLAUDE_LOG": str(log),
                              "DISCORD_TOKEN": "NzAwMDAwMDAwMDAwMDAwMDAw.never-leak-this"})
        started.append(bot)
        bot.wait_stderr("console mode")
        return bot, log, project

    yield start
    for bot in started:
        bot.kill()


def invocations(log):
    with open(log) as f:
        return [json.loads(line) for line in f if '"event": "start"' in line or '"event":"start"' in line]


def test_reply_is_chunked_with_fences_intact(console):
    bot, _, _ = console()
    bot.send("show me [code]")
    bot.wait_stdout("step 060")
    out = bot.stdout
    messages = out.split("──────── ")[1:]
    assert len(messages) >= 2
    for m in messages:
        body = m.split("\n", 1)[1]
        assert len(body.rstrip("\n")) <= 2000
        assert body.count("```") % 2 == 0, body  # every chunk's fences are balanced


def test_second_turn_resumes_the_session(console):
    bot, log, project = console()
    bot.send("first")
    bot.wait_stdout("ECHO[msgs=2,")
    bot.send("second")
    bot.wait_stdout("ECHO[msgs=4,")
    runs = invocations(log)
    assert "--resume" not in runs[0]["argv"]
    assert "--resume" in runs[1]["argv"]
    assert runs[1]["cwd"] == os.path.realpath(project)
    assert runs[1]["argv"][-2:] == ["--", "second"]


def test_restart_resumes_the_conversation(console, tmp_path):
    bot, _, _ = console()
    bot.send("before restart")
    bot.wait_stdout("ECHO[msgs=2,")
    bot.signal(signal.SIGKILL)
    bot.wait_exit(5)
    bot2, _, _ = console()
    bot2.send("after restart")
    bot2.wait_stdout("ECHO[msgs=4,")


def test_model_command_sets_the_next_turns_model(console):
    bot, log, _ = console()
    bot.send("/model")
    bot.wait_stdout("Choices: sonnet, opus.")
    bot.send("/model opus")
    bot.wait_stdout("Model set to **opus**")
    bot.send("/model gpt")
    bot.wait_stdout("Unknown model `gpt`")
    bot.send("which model")
    bot.wait_stdout("model=opus]: which model")
    argv = invocations(log)[-1]["argv"]
    assert argv[argv.index("--model") + 1] == "opus"


def test_status_shows_the_session(console):
    bot, _, project = console()
    bot.send("hello")
    bot.wait_stdout("ECHO[")
    bot.send("/status")
    bot.wait_stdout("Gateway latency:")
    out = bot.stdout
    assert "State: idle" in out
    assert f"Project: `{project}`" in out
    assert "Turns: 1" in out
    assert "Session: none" not in out


def test_reset_asks_and_starts_fresh(console):
    bot, _, _ = console()
    bot.send("remember this")
    bot.wait_stdout("ECHO[msgs=2,")
    bot.send("/reset")
    bot.wait_stdout("answer y/N:")
    bot.send("n")
    bot.wait_stdout("Reset cancelled")
    bot.send("/reset")
    bot.wait_stdout("answer y/N:", count=2)
    bot.send("y")
    bot.wait_stdout("Session reset by")
    bot.send("fresh start")
    bot.wait_stdout("ECHO[msgs=2,model=claude-opus-4-8]: fresh start")


def test_stop_ends_a_slow_turn_and_no_process_is_left(console):
    bot, log, _ = console()
    bot.send("work hard [slow 20]")
    bot.send("/status")
    bot.wait_stdout("State: running for")
    bot.send("queued behind [slow 0]")
    bot.wait_stdout("Queued — 1 ahead of you.")
    bot.send("/stop")
    bot.wait_stdout("Stopping the running turn")
    bot.wait_stdout("1 queued message(s) will run next")
    bot.wait_stdout("Your message stays queued: it runs next.")
    bot.wait_stdout("Stopped by <@console>.")
    bot.wait_stdout("]: queued behind [slow 0]")  # the queued message still ran
    pid = invocations(log)[0]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_errors_reach_the_user_verbatim(console):
    bot, _, _ = console()
    bot.send("[api-error 401]")
    bot.wait_stdout("Claude could not answer: Invalid API key")
    bot.send("[garbage]")
    bot.wait_stdout("Claude did not finish normally")


def test_missing_cli_says_how_to_install(console):
    bot, _, _ = console(claude="no-such-claude-binary")
    bot.wait_stderr("npm install -g @anthropic-ai/claude-code")
    bot.send("hello")
    bot.wait_stdout("npm install -g @anthropic-ai/claude-code")
    assert "claude.command" in bot.stdout


def test_missing_project_is_a_clear_error(console, tmp_path):
    bot, _, project = console()
    os.rmdir(project)
    bot.send("hello")
    bot.wait_stdout("project directory is missing")


def test_stale_session_is_dropped_and_retried(console, tmp_path):
    bot, log, project = console()
    bot.send("one")
    bot.wait_stdout("ECHO[msgs=2,")
    # Claude forgets the conversation (another machine, a wiped HOME...).
    import shutil
    shutil.rmtree(tmp_path / ".claude")
    bot.send("two")
    bot.wait_stdout("could not be resumed")
    bot.wait_stdout("ECHO[msgs=2,model=claude-opus-4-8]: two")


def test_long_reply_goes_out_as_a_file(console):
    bot, _, _ = console()
    bot.send("[huge 20k]")
    bot.wait_stdout("[attached reply.md, ")
    assert "the whole reply is attached" in bot.stdout


def test_empty_reply_lists_denied_tools(console):
    bot, _, _ = console()
    bot.send("[deny] [empty]")
    bot.wait_stdout("permission_mode")
    out = bot.stdout
    assert "Claude finished without a reply." in out
    assert "Claude was not allowed to use:\n- Bash: `touch " in out


def test_child_environment_has_no_token(console):
    bot, _, _ = console()
    bot.send("[env]")
    bot.wait_stdout("PATH=")
    assert "DISCORD_TOKEN" not in bot.stdout
    assert "never-leak-this" not in bot.stdout


def test_messages_in_one_channel_run_in_order_with_queue_notices(console):
    bot, log, _ = console()
    bot.send("a [slow 1]")
    bot.send("b")
    bot.send("c")
    bot.wait_stdout("Queued — 2 ahead of you.")
    bot.wait_stdout("]: c")
    out = bot.stdout
    assert out.index("]: a") < out.index("]: b") < out.index("]: c")


def test_timeout_stops_the_turn_and_says_after_how_long(console):
    bot, log, _ = console(timeout=1)
    bot.send("endless [slow 20]")
    bot.wait_stdout("Stopped: the turn ran longer than 1 s (claude.timeout in config.lua).")
    pid = invocations(log)[0]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_reset_while_a_turn_runs_is_refused(console):
    bot, _, _ = console()
    bot.send("busy [slow 3]")
    bot.send("/status")
    bot.wait_stdout("State: running for")
    bot.send("/reset")
    bot.wait_stdout("answer y/N:")
    bot.send("y")
    bot.wait_stdout("A turn is running in this channel: use /stop first, then /reset.")
    bot.wait_stdout("]: busy [slow 3]")
    bot.send("/status")
    bot.wait_stdout("State: idle")
    assert "Session: none" not in bot.stdout.rsplit("## Claude session", 1)[1]
