"""The real bot against the fake Discord and the fake claude: one helper for the tests.

    with DiscordBot(tmp_path, scenario={...}) as env:
        env.fake.post_message("hello", mention_bot=True)
        env.fake.wait_for_bot_message(env.fake.channel_id)
"""
import copy
import json
import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fakediscord.harness import FakeDiscord  # noqa: E402
from fakediscord import world  # noqa: E402

from botproc import BotProcess, REPO  # noqa: E402

FAKE_CLAUDE = os.path.join(REPO, "tests", "fakeclaude", "claude")
SECOND_CHANNEL_ID = "1300000000000000013"  # an `all` channel, beside the default one
OPEN_CHANNEL_ID = "1300000000000000023"    # a channel with a user list


def guilds_with_more_channels():
    guilds = world.default_guilds()
    for cid, name in ((SECOND_CHANNEL_ID, "all-channel"), (OPEN_CHANNEL_ID, "restricted")):
        guilds[0]["channels"].append({"id": cid, "type": 0, "name": name, "position": 1, "parent_id": None,
                                      "topic": None, "nsfw": False, "permission_overwrites": []})
    return guilds


class DiscordBot:
    def __init__(self, tmp_path, scenario=None, tls=True, config_extra="", claude=FAKE_CLAUDE, bot_file=None,
                 limits="shutdown_grace = 3, queue_per_channel = 2", discord_extra=""):
        scenario = dict(scenario or {})
        scenario.setdefault("heartbeat_interval", 1000)
        scenario.setdefault("guilds", guilds_with_more_channels())
        self.tmp = tmp_path
        self.fake = FakeDiscord(scenario, tls=tls).start()
        self.claude_log = str(tmp_path / "claude.log")
        self.projects = {}
        for cid in (self.fake.channel_id, SECOND_CHANNEL_ID, OPEN_CHANNEL_ID):
            p = tmp_path / ("project-" + cid[-2:])
            p.mkdir(exist_ok=True)
            self.projects[cid] = str(p)
        s = self.fake.settings()
        self.bot_file = bot_file or os.path.join(REPO, "bot.lua")
        self.config = tmp_path / "config.lua"
        self.config.write_text(textwrap.dedent(f"""\
            return {{
              discord = {{
                token = env "DISCORD_TOKEN",
                api_url = {json.dumps(s["api_url"])},
                gateway_url = {json.dumps(s["gateway_url"])},
                {"ca_file = " + json.dumps(s["ca_file"]) + "," if s.get("ca_file") else ""}
                guild_ids = {{ {json.dumps(self.fake.guild_id)} }},
                {discord_extra}
              }},
              claude = {{ command = {json.dumps(claude)}, models = {{ "sonnet", "opus" }},
                         timeout = 30, kill_grace = 2,
                         env = {{ FAKE_CLAUDE_LOG = env "FAKE_CLAUDE_LOG" }} }},
              channels = {{
                [{json.dumps(self.fake.channel_id)}] = {{ project = {json.dumps(self.projects[self.fake.channel_id])} }},
                [{json.dumps(SECOND_CHANNEL_ID)}] = {{ project = {json.dumps(self.projects[SECOND_CHANNEL_ID])},
                                                      trigger = "all" }},
                [{json.dumps(OPEN_CHANNEL_ID)}] = {{ project = {json.dumps(self.projects[OPEN_CHANNEL_ID])},
                                                    users = {{ {json.dumps(self.fake.user_id)} }} }},
              }},
              state_dir = {json.dumps(str(tmp_path / "state"))},
              bot_file = {json.dumps(self.bot_file)},
              limits = {{ {limits} }},
              {config_extra}
            }}
            """))
        self.env = {"HOME": str(tmp_path), "FAKE_CLAUDE_LOG": self.claude_log, "DISCORD_TOKEN": s["token"]}
        self.token = s["token"]
        self.bot = None

    def start(self, log_level="info"):
        self.bot = BotProcess(["--config", str(self.config), "--log-level", log_level], env=self.env)
        return self

    def wait_ready(self):
        self.fake.wait_until(lambda: self.fake.commands()["current"].get(self.fake.guild_id),
                             timeout=15, what="slash commands registered")
        return self

    def invocations(self):
        if not os.path.exists(self.claude_log):
            return []
        with open(self.claude_log) as f:
            return [r for r in map(json.loads, f) if r.get("event") == "start"]

    def bot_texts(self, channel_id=None):
        return [m["content"] for m in self.fake.bot_messages(channel_id or self.fake.channel_id)]

    def stop(self):
        if self.bot:
            self.bot.kill()
        self.fake.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if exc[0] and self.bot:
            print("--- bot stderr ---\n" + self.bot.stderr)
            print("--- fake log ---\n" + self.fake.log())
        self.stop()
