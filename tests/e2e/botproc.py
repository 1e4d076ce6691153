"""Run the real claude-coordinator binary and watch its output, for end-to-end tests.

    bot = BotProcess(["--console", "--config", cfg])
    bot.send("hello")
    bot.wait_stdout("I heard: hello")
    bot.signal(signal.SIGTERM); assert bot.wait_exit(5) == 0

Waiting is always for a condition with a deadline, never a blind sleep.
"""
import os
import signal
import subprocess
import threading
import time

BINARY = os.environ.get("CC_BINARY", os.path.join(os.path.dirname(__file__), "..", "..", "build",
                                                  "claude-coordinator"))
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class BotProcess:
    def __init__(self, args, env=None, cwd=None):
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
                    "LANG": "C.UTF-8"}
        full_env.update(env or {})
        self.proc = subprocess.Popen([BINARY] + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=full_env, cwd=cwd or REPO)
        self._out, self._err = [], []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._pump, args=(self.proc.stdout, self._out), daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, self._err), daemon=True)]
        for r in self._readers:
            r.start()

    def _pump(self, stream, sink):
        for raw in iter(stream.readline, b""):
            with self._cond:
                sink.append(raw.decode("utf-8", "replace"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def stdout(self):
        with self._cond:
            return "".join(self._out)

    @property
    def stderr(self):
        with self._cond:
            return "".join(self._err)

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def close_stdin(self):
        self.proc.stdin.close()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def _wait(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n"
                                         f"--- stdout ---\n{''.join(self._out)}\n"
                                         f"--- stderr ---\n{''.join(self._err)}")
                self._cond.wait(min(left, 0.1))

    def wait_stdout(self, text, timeout=10, count=1):
        self._wait(lambda: "".join(self._out).count(text) >= count, timeout, repr(text) + " on stdout")

    def wait_stderr(self, text, timeout=10, count=1):
        self._wait(lambda: "".join(self._err).count(text) >= count, timeout, repr(text) + " on stderr")

    def wait_exit(self, timeout=10):
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s\n--- stderr ---\n{self.stderr}")
        for r in self._readers:
            r.join(5)
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass


def run(args, env=None, timeout=20):
    """Runs the binary to completion; returns (code, stdout, stderr)."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    full_env.update(env or {})
    p = subprocess.run([BINARY] + list(args), capture_output=True, text=True, env=full_env, timeout=timeout,
                       cwd=REPO)
    return p.returncode, p.stdout, p.stderr
