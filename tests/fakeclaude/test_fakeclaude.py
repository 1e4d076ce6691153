"""The fake claude against the recordings of the real CLI 2.1.197.

Each recorded case is replayed through the fake; the output must have the same event
lines with the same keys (in the same order) and value types, the same exit status and
the same stderr (modulo ids and paths).
"""

import json
import os
import signal
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "claude")
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures", "claude-cli-2.1.197")
STREAM = ["-p", "--output-format", "stream-json", "--verbose"]
JSON = ["-p", "--output-format", "json"]


def fixture(name):
    def read(ext):
        with open(os.path.join(FIXTURES, name + "." + ext), encoding="utf-8") as f:
            return f.read()
    return read("stdout"), read("stderr"), int(read("exit").strip())


def events(text):
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines()]


def shape(v):
    """The structure of a JSON value: key order, and types instead of values."""
    if isinstance(v, dict):
        return [(k, shape(x)) for k, x in v.items()]
    if isinstance(v, list):
        return ["list"] + ([shape(v[0])] if v else [])
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "num"
    if v is None:
        return "null"
    return "str"


def label(ev):
    inner = ""
    if ev["type"] in ("assistant", "user"):
        inner = ",".join(b["type"] for b in ev["message"]["content"])
    elif ev["type"] == "stream_event":
        inner = ev["event"]["type"]
    return (ev["type"], ev.get("subtype", ""), inner)


def assert_same_shapes(got, want):
    assert [label(e) for e in got] == [label(e) for e in want]
    for g, w in zip(got, want):
        assert shape(g) == shape(w), label(w)


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
         "ANTHROPIC_API_KEY": "any"}
    return {"env": e, "home": home, "project": project, "tmp": tmp_path}


def run(env, args, cwd=None, stdin=subprocess.DEVNULL, extra_env=None, input_text=None):
    e = dict(env["env"])
    e.update(extra_env or {})
    p = subprocess.run([FAKE] + args, cwd=str(cwd or env["project"]), env=e,
                       stdin=None if input_text is not None else stdin,
                       input=input_text, capture_output=True, text=True, timeout=30)
    return p.stdout, p.stderr, p.returncode


def result_of(stdout):
    evs = events(stdout)
    assert evs, "no output"
    assert evs[-1]["type"] == "result"
    return evs[-1]


# ------------------------------------------------------------------ recorded cases

@pytest.mark.parametrize("name,args,prompt", [
    ("json-success", JSON, "warm"),
    ("json-model", JSON + ["--model", "some-model"], "which model"),
    ("json-with-verbose", JSON + ["--verbose"], "json verbose"),
    ("stream-success", STREAM, "stream me"),
    ("stream-partial-messages", STREAM + ["--include-partial-messages"],
     "SLOW stream with partials here"),
])
def test_echo_cases_match_recording(env, name, args, prompt):
    want_out, want_err, want_code = fixture(name)
    out, err, code = run(env, args + ["--", prompt])
    assert (code, err) == (want_code, want_err)
    assert_same_shapes(events(out), events(want_out))
    assert result_of(out)["result"] == result_of(want_out)["result"]


def test_model_usage_follows_model(env):
    out, _, _ = run(env, JSON + ["--model", "some-model", "--", "which model"])
    want = result_of(fixture("json-model")[0])
    got = result_of(out)
    assert list(got["modelUsage"]) == ["some-model"]
    assert got["modelUsage"]["some-model"]["contextWindow"] == \
        want["modelUsage"]["some-model"]["contextWindow"]


def test_text_output(env):
    want_out, want_err, want_code = fixture("text-success")
    assert run(env, ["-p", "--", "plain text please"]) == (want_out, want_err, want_code)


def test_code_reply_contains_recorded_reply(env):
    want_out, _, _ = fixture("json-codeblock")
    out, err, code = run(env, ["-p", "--", "[code]"])
    assert code == 0 and err == ""
    assert out.startswith(want_out.rstrip("\n"))
    assert out.count("```") >= 8


@pytest.mark.parametrize("kind", ["401", "429", "500", "connrefused", "not-logged-in"])
def test_api_errors_match_recording(env, kind):
    want_out, want_err, want_code = fixture("json-error-" + kind)
    out, err, code = run(env, JSON + ["--", "[api-error %s]" % kind])
    assert (code, err) == (want_code, want_err)
    assert_same_shapes(events(out), events(want_out))
    got, want = result_of(out), result_of(want_out)
    for key in ("result", "is_error", "subtype", "api_error_status"):
        assert got[key] == want[key]


def test_stream_api_error_matches_recording(env):
    want_out, want_err, want_code = fixture("stream-error-500")
    out, err, code = run(env, STREAM + ["--", "[api-error 500]"])
    assert (code, err) == (want_code, want_err)
    assert_same_shapes(events(out), events(want_out))
    assert events(out)[1]["message"]["model"] == "<synthetic>"


def test_stream_tool_turn_matches_recording(env):
    want_out, want_err, want_code = fixture("stream-tool-turn")
    out, err, code = run(env, STREAM + ["--", "[tool hi-sj]"])
    assert (code, err) == (want_code, want_err)
    assert_same_shapes(events(out), events(want_out))
    assert result_of(out)["result"] == "TOOL_RESULT: hi-sj"
    assert result_of(out)["num_turns"] == 2


def test_max_turns_matches_recording(env):
    want_out, want_err, want_code = fixture("json-error-max-turns")
    out, err, code = run(env, JSON + ["--max-turns", "1", "--", "[tool x]"])
    assert (code, err) == (want_code, want_err)
    assert_same_shapes(events(out), events(want_out))
    got = result_of(out)
    assert "result" not in got
    assert got["errors"] == result_of(want_out)["errors"]


def test_tool_denied_matches_recording(env):
    want_out, want_err, want_code = fixture("json-tool-denied")
    out, err, code = run(env, JSON + ["--", "[deny]"])
    assert (code, err) == (want_code, want_err)
    assert_same_shapes(events(out), events(want_out))
    got, want = result_of(out), result_of(want_out)
    assert got["result"] == want["result"].replace("/srv/project", str(env["project"]))
    assert got["permission_denials"][0]["tool_name"] == "Bash"
    assert not (env["project"] / "created.txt").exists()


@pytest.mark.parametrize("args", [["--permission-mode", "acceptEdits"],
                                  ["--allowedTools", "Bash,Read"]])
def test_tool_allowed_when_widened(env, args):
    out, _, code = run(env, JSON + args + ["--", "[deny]"])
    assert code == 0
    assert result_of(out)["permission_denials"] == []
    assert (env["project"] / "created.txt").exists()


def test_stream_without_verbose(env):
    assert run(env, ["-p", "--output-format", "stream-json", "--", "x"]) == \
        fixture("stream-without-verbose")


def test_resume_unknown_id(env):
    assert run(env, JSON + ["--resume", "11111111-2222-3333-4444-555555555555", "--", "x"]) == \
        fixture("json-resume-unknown-id")
    out, err, code = run(env, STREAM + ["--resume", "11111111-2222-3333-4444-555555555555",
                                        "--", "x"])
    assert (out, code) == ("", 1)


def test_resume_not_uuid(env):
    assert run(env, JSON + ["--resume", "notauuid", "--", "x"]) == \
        fixture("json-resume-not-uuid")


def test_session_id_in_use(env):
    sid = "644aadfd-374e-4b43-ac2f-558410a66e33"
    out, _, code = run(env, JSON + ["--session-id", sid, "--", "first"])
    assert code == 0 and result_of(out)["session_id"] == sid
    assert run(env, JSON + ["--session-id", sid, "--", "again"]) == \
        fixture("json-session-id-in-use")


# ------------------------------------------------------------------ sessions

def test_resume_same_cwd_counts_turns(env):
    out, _, _ = run(env, JSON + ["--", "one"])
    first = result_of(out)
    sid = first["session_id"]
    assert first["result"] == "ECHO[msgs=2,model=claude-opus-4-8]: one"
    out, _, code = run(env, JSON + ["--resume", sid, "--", "two"])
    assert code == 0
    assert result_of(out)["session_id"] == sid
    assert result_of(out)["result"] == "ECHO[msgs=4,model=claude-opus-4-8]: two"
    # the same directory through a symlink is the same project (realpath)
    link = env["tmp"] / "link"
    link.symlink_to(env["project"])
    out, _, code = run(env, JSON + ["--resume", sid, "--", "three"], cwd=link)
    assert code == 0 and result_of(out)["result"].startswith("ECHO[msgs=6,")
    slug = str(env["project"].resolve()).replace("/", "-").replace("_", "-").replace(".", "-")
    assert (env["home"] / ".claude" / "projects" / slug / (sid + ".jsonl")).is_file()


def test_resume_other_cwd_fails_like_recording(env):
    out, _, _ = run(env, JSON + ["--", "one"])
    sid = result_of(out)["session_id"]
    other = env["tmp"] / "other"
    other.mkdir()
    want_out, want_err, want_code = fixture("json-resume-other-cwd")
    out, err, code = run(env, JSON + ["--resume", sid, "--", "two"], cwd=other)
    assert (out, code) == (want_out, want_code)
    assert err == want_err.replace("ff523815-5e7b-4910-9157-3542ab3a9601", sid)


def test_resume_other_home_fails(env):
    out, _, _ = run(env, JSON + ["--", "one"])
    sid = result_of(out)["session_id"]
    other_home = env["tmp"] / "home2"
    other_home.mkdir()
    out, err, code = run(env, JSON + ["--resume", sid, "--", "two"],
                         extra_env={"HOME": str(other_home)})
    assert (out, code) == ("", 1)
    assert err == "No conversation found with session ID: %s\n" % sid


def test_resume_after_error_matches_recording(env):
    out, _, code = run(env, JSON + ["--", "[api-error 500]"])
    assert code == 1
    sid = result_of(out)["session_id"]
    want_out, want_err, want_code = fixture("json-resume-after-error")
    out, err, code = run(env, JSON + ["--resume", sid, "--", "after error"])
    assert (code, err) == (want_code, want_err)
    assert_same_shapes(events(out), events(want_out))
    assert result_of(out)["result"] == result_of(want_out)["result"]
    assert result_of(out)["session_id"] == sid


# ------------------------------------------------------------------ prompt and flags

def test_prompt_from_stdin_keeps_newline(env):
    out, _, code = run(env, JSON, input_text="from stdin\n")
    assert code == 0
    assert result_of(out)["result"] == "ECHO[msgs=2,model=claude-opus-4-8]: from stdin\n"


def test_prompt_starting_with_dash(env):
    out, _, code = run(env, JSON + ["--", "--help me"])
    assert code == 0
    assert result_of(out)["result"].endswith("]: --help me")
    out, err, code = run(env, JSON + ["--frobnicate", "--", "x"])
    assert (out, err, code) == ("", "error: unknown option '--frobnicate'\n", 1)


def test_no_prompt(env):
    out, err, code = run(env, JSON)
    assert (out, code) == ("", 1)
    assert "Input must be provided" in err


def test_invocation_log(env):
    log = env["tmp"] / "calls.log"
    args = STREAM + ["--model", "opus", "--permission-mode", "acceptEdits",
                     "--allowedTools", "Read,Bash", "--append-system-prompt", "be brief",
                     "--", "-x"]
    out, _, code = run(env, args, extra_env={"FAKE_CLAUDE_LOG": str(log)})
    assert code == 0
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["event"] for r in recs] == ["start", "exit"]
    assert recs[0]["argv"] == args
    assert recs[0]["cwd"] == str(env["project"].resolve())
    assert recs[0]["env"]["HOME"] == str(env["home"])
    assert recs[1]["status"] == 0 and recs[1]["session_id"] == result_of(out)["session_id"]
    init = events(out)[0]
    assert init["model"] == "opus" and init["permissionMode"] == "acceptEdits"
    assert result_of(out)["result"] == "ECHO[msgs=2,model=opus]: -x"


def test_system_prompt_keyword(env):
    out, _, _ = run(env, JSON + ["--append-system-prompt", "be brief", "--", "[system-prompt]"])
    assert result_of(out)["result"] == "APPEND-SYSTEM-PROMPT: be brief"


def test_skip_permissions_as_root(env):
    if os.geteuid() != 0:
        pytest.skip("only refused as root")
    out, err, code = run(env, JSON + ["--dangerously-skip-permissions", "--", "x"])
    assert (out, code) == ("", 1) and "root" in err
    out, _, code = run(env, JSON + ["--dangerously-skip-permissions", "--", "x"],
                       extra_env={"IS_SANDBOX": "1"})
    assert code == 0


# ------------------------------------------------------------------ scripted behaviours

def test_env_keyword(env):
    out, _, _ = run(env, JSON + ["--", "[env]"], extra_env={"SOME_VAR": "a value"})
    lines = result_of(out)["result"].split("\n")
    assert "SOME_VAR=a value" in lines
    assert "HOME=%s" % env["home"] in lines
    assert not any(line.startswith("DISCORD_TOKEN=") for line in lines)


def test_huge(env):
    out, _, code = run(env, STREAM + ["--", "[huge 300k]"])
    assert code == 0
    assert len(result_of(out)["result"].encode()) == 300 * 1024


def test_mention(env):
    out, _, _ = run(env, JSON + ["--", "[mention]"])
    text = result_of(out)["result"]
    assert "@everyone" in text and "<@123>" in text


def test_empty(env):
    out, _, code = run(env, STREAM + ["--", "[empty]"])
    assert code == 0 and result_of(out)["result"] == ""


def test_thinking(env):
    out, _, _ = run(env, STREAM + ["--", "[thinking] hm"])
    assert [label(e)[2] for e in events(out) if e["type"] == "assistant"] == ["thinking", "text"]


def test_garbage(env):
    out, err, code = run(env, STREAM + ["--", "[garbage]"])
    lines = out.splitlines()
    json.loads(lines[0])
    with pytest.raises(ValueError):
        json.loads(lines[1])
    assert code == 0 and len(err.splitlines()) == 2
    assert '"type":"result"' not in out


@pytest.mark.parametrize("arg,want", [("", 1), (" 3", 3), (" kill", -signal.SIGKILL)])
def test_crash(env, arg, want):
    out, err, code = run(env, STREAM + ["--", "[crash%s]" % arg])
    assert code == want
    assert "TypeError: fake crash" in err
    assert [e["type"] for e in events(out)] == ["system"]


def test_slow_progress(env):
    t0 = time.monotonic()
    out, _, code = run(env, STREAM + ["--", "[slow 1.2]"])
    assert time.monotonic() - t0 >= 1.2
    evs = events(out)
    tools = [e for e in evs if label(e)[2] == "tool_use"]
    assert len(tools) == 2 and tools[0]["message"]["content"][0]["name"] == "Bash"
    assert result_of(out)["num_turns"] == 3


# ------------------------------------------------------------------ signals

def start(env, args, extra_env=None):
    e = dict(env["env"])
    e.update(extra_env or {})
    return subprocess.Popen([FAKE] + args, cwd=str(env["project"]), env=e,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_sigint_mid_run(env):
    want = events(fixture("stream-sigint")[0])
    p = start(env, STREAM + ["--", "[slow 20]"])
    try:
        assert json.loads(p.stdout.readline())["subtype"] == "init"
        first = json.loads(p.stdout.readline())
        assert first["type"] == "assistant"
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == int(fixture("stream-sigint")[2])
    assert err == ""
    got = events(rest)
    assert_same_shapes(got[-2:], want[-2:])
    for key in ("subtype", "terminal_reason", "errors", "is_error"):
        assert got[-1][key] == want[-1][key]
    assert got[-2]["message"]["content"][0]["text"] == "[Request interrupted by user]"
    # the interrupted turn is in the transcript: resuming counts it
    sid = got[-1]["session_id"]
    out, _, code = run(env, JSON + ["--resume", sid, "--", "next"])
    assert code == 0 and result_of(out)["result"].startswith("ECHO[msgs=4,")


def test_sigterm_mid_run(env):
    _, want_err, want_code = fixture("stream-sigterm")
    log = env["tmp"] / "calls.log"
    p = start(env, JSON + ["--", "[slow 20]"], extra_env={"FAKE_CLAUDE_LOG": str(log)})
    try:
        # json mode prints nothing before the end: wait for the start record instead
        deadline = time.monotonic() + 10
        while not (log.exists() and '"start"' in log.read_text()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert (out, err, p.returncode) == ("", want_err, want_code)


def test_sigterm_stream_has_no_result(env):
    p = start(env, STREAM + ["--", "[slow 20]"])
    try:
        p.stdout.readline()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 143 and err == ""
    assert '"type":"result"' not in out


def pid_alive(pid):
    """True while pid runs (a zombie nobody has reaped yet counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_fork_grandchild_in_process_group(env):
    log = env["tmp"] / "calls.log"
    p = start(env, STREAM + ["--", "[fork-grandchild] [slow 20]"],
              extra_env={"FAKE_CLAUDE_LOG": str(log)})
    gc = None
    try:
        p.stdout.readline()
        deadline = time.monotonic() + 10
        while gc is None and time.monotonic() < deadline:
            for line in log.read_text().splitlines():
                rec = json.loads(line)
                if rec["event"] == "grandchild":
                    gc = rec["grandchild_pid"]
            if gc is None:
                time.sleep(0.05)
        assert gc is not None
        assert os.getpgid(gc) == p.pid
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
        assert pid_alive(gc)  # killing the fake alone leaves the grandchild running
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        p.stdout.close()
        p.stderr.close()
    deadline = time.monotonic() + 5
    while pid_alive(gc) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(gc)
