"""Runs the REST benchmark against the fake Discord with its limits off (see ./run)."""
import os
import statistics
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(os.path.dirname(here))
sys.path.insert(0, os.path.join(repo, "tests"))
from fakediscord.harness import FakeDiscord  # noqa: E402

build, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def timed(cmd, env=None):
    """(wall seconds, cpu seconds user+sys) of cmd, from /usr/bin/time."""
    with tempfile.NamedTemporaryFile("r") as tf:
        subprocess.run(["/usr/bin/time", "-f", "%e %U %S", "-o", tf.name] + cmd, env=env,
                       check=True, stdout=subprocess.PIPE)
        wall, user, sys_ = map(float, tf.read().split()[-3:])
    return wall, user + sys_


# no 429s, and a bucket large enough that its headers never ask the client to wait
SCENARIO = {"rate_limits": False,
            "routes": {"GET /channels/{channel_id}": {"limit": 10 ** 9, "window": 10 ** 6}}}

with FakeDiscord(SCENARIO) as fake:
    url = "%s/channels/%s" % (fake.api_url, fake.channel_id)
    env = dict(os.environ, DISCORD_TOKEN=fake.token, DISCORD_API_URL=fake.api_url,
               BENCH_CHANNEL=fake.channel_id,
               LUA_PATH="%s/lua/?.lua;%s/lua/?/init.lua;;" % (repo, repo),
               LUA_CPATH="%s/?.so;;" % build)
    with tempfile.NamedTemporaryFile("w", suffix=".curl", delete=False) as cf:
        cf.write('header = "Authorization: Bot %s"\n' % fake.token)
        cf.write('header = "User-Agent: DiscordBot (https://example.invalid/bench, 1)"\n')
        cf.write('silent\noutput = "/dev/null"\n')
        for _ in range(n):
            cf.write('url = "%s"\noutput = "/dev/null"\n' % url)
        curl_cfg = cf.name
    try:
        rows = {"curl": [], "ours": [], "ours8": []}
        for _ in range(runs):
            # curl: one process, n URLs on one kept-alive connection
            rows["curl"].append(timed(["curl", "-K", curl_cfg]))
            rows["ours"].append(timed(["lua5.4", os.path.join(here, "rest_bench.lua"), str(n), "1"], env))
            rows["ours8"].append(timed(["lua5.4", os.path.join(here, "rest_bench.lua"), str(n), "8"], env))
    finally:
        os.unlink(curl_cfg)

    def report(label, key):
        wall = statistics.median(w for w, _ in rows[key])
        cpu = statistics.median(c for _, c in rows[key])
        print("%-40s %9.0f req/s %9.1f us CPU/req" % (label, n / wall, cpu / n * 1e6))
        return n / wall, cpu / n

    c_rps, c_cpu = report("curl -K, one keep-alive connection", "curl")
    o_rps, o_cpu = report("core.discord.request, 1 task", "ours")
    p_rps, p_cpu = report("core.discord.request, 8 tasks", "ours8")
    print("%-40s %9.2f x    %9.2f x" % ("1 task / curl (req/s, CPU/req)", o_rps / c_rps, o_cpu / c_cpu))
    print("%-40s %9.2f x    %9.2f x" % ("8 tasks / curl (req/s, CPU/req)", p_rps / c_rps, p_cpu / c_cpu))
    st = fake.state()["rest"]
    assert st["bad_auth"] == 0 and st["bad_user_agent"] == 0, st
