"""State of the fake Discord: scenario defaults, ids, guilds, users, recorded activity.

Pure data and helpers, no sockets: server.py serves it, the control API reads it.
"""

import copy
import hashlib
import itertools
import time

DISCORD_EPOCH_MS = 1420070400000

# Intents (gateway) the fake understands.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = {
    "GUILD_MEMBERS": INTENT_GUILD_MEMBERS,
    "GUILD_PRESENCES": INTENT_GUILD_PRESENCES,
    "MESSAGE_CONTENT": INTENT_MESSAGE_CONTENT,
}
ALL_INTENTS = (1 << 26) - 1  # every intent bit Discord defines (0..25)

APP_ID = "1100000000000000001"
GUILD_ID = "1200000000000000002"
CHANNEL_ID = "1300000000000000003"
THREAD_ID = "1300000000000000004"
DM_CHANNEL_ID = "1300000000000000005"
USER_ID = "1400000000000000006"
OTHER_USER_ID = "1400000000000000008"
ROLE_ID = "1500000000000000007"

DEFAULTS = {
    # identity
    "token": "FAKE.bot-token.for-tests",
    "application_id": APP_ID,
    "bot_user": {"id": APP_ID, "username": "coordinator", "discriminator": "0",
                 "global_name": None, "avatar": None, "bot": True},
    # gateway
    "heartbeat_interval": 41250,         # ms, sent in Hello
    "heartbeat_timeout_factor": 2.0,     # server closes if no heartbeat in interval*factor + 1 s
    "heartbeat_timeout_code": 4009,      # 0 disables the server-side check
    "hello_delay": 0.0,                  # s before Hello is sent (0 = immediately)
    "send_hello": True,                  # False: never send Hello (client timeout tests)
    "send_ready": True,                  # False: accept Identify but never send READY
    "allowed_intents": ["MESSAGE_CONTENT"],  # privileged intents enabled in the "portal"
    "shards": 1,                         # recommended shard count in /gateway/bot
    "shards_required": 0,                # >0: Identify with fewer shards closes 4011
    "session_start_total": 1000,
    "session_start_remaining": 1000,
    "max_concurrency": 1,
    "max_payload": 4096,                 # bytes; bigger client payload closes 4002
    "gateway_send_limit": 120,           # client payloads per window, else 4008
    "gateway_send_window": 60.0,         # s
    "fragment_size": 0,                  # >0: split each server message into frames of N bytes
    "fragment_compressed": True,         # zlib-stream messages always span >= 2 frames
    "fragment_text": False,              # also split uncompressed (text) messages
    "identify_window": 5.0,              # s; max_concurrency identifies per window per bucket
    "enforce_identify_window": False,    # True: a too-early Identify gets op 9 false (else only counted)
    "op7_before_hello": 0,               # the next N connections get op 7 instead of Hello
    "strict_resume_url": True,           # Resume on the first URL answers op 9 false
    "guild_create_members": 0,           # pad GUILD_CREATE with N members (megabyte READY tests)
    "echo_bot_messages": True,           # dispatch MESSAGE_CREATE for the bot's own posts
    # REST
    "check_user_agent": True,
    "rate_limits": True,                 # False: no 429s at all (benchmarks); headers still sent
    "global_limit": 50,                  # requests per global_window
    "global_window": 1.0,
    "rate_limit_scale": 1.0,             # multiplies every bucket window
    "routes": {},                        # "METHOD /route/{param}": {"limit", "window", "bucket"}
    "invalid_request_limit": 10000,      # 401/403/429 answers per window before the IP ban
    "invalid_request_window": 600.0,
    "ban_seconds": 60.0,                 # how long the "Cloudflare" ban lasts
    "nonce_window": 120.0,               # s during which enforce_nonce deduplicates
    "max_file_size": 10 * 1024 * 1024,
    # interactions
    "interaction_callback_timeout": 3.0,  # s to answer an interaction
    "interaction_token_ttl": 900.0,       # s the token stays valid for follow-ups
    "expired_token_code": 50027,          # what an expired token answers: 50027 (401 Invalid
                                          # Webhook Token, Discord's answer) or 10062 (404)
    # world
    "guilds": None,                      # None: one default guild (see default_guilds)
    "users": None,                       # None: alice and bob
    "tls": False,
}

# Discord-like bucket limits (limit, window seconds) by route template.
DEFAULT_ROUTE_LIMITS = {
    "GET /gateway/bot": (2, 5.0),
    "GET /gateway": (2, 5.0),
    "GET /users/@me": (5, 5.0),
    "POST /users/@me/channels": (5, 5.0),
    "GET /channels/{channel_id}": (5, 5.0),
    "GET /channels/{channel_id}/messages/{message_id}": (5, 5.0),
    "POST /channels/{channel_id}/messages": (5, 5.0),
    "PATCH /channels/{channel_id}/messages/{message_id}": (5, 5.0),
    "DELETE /channels/{channel_id}/messages/{message_id}": (5, 1.0),
    "POST /channels/{channel_id}/typing": (5, 5.0),
    "PUT /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me": (1, 0.25),
    "POST /interactions/{interaction_id}/{interaction_token}/callback": (5, 1.0),
    "POST /webhooks/{application_id}/{interaction_token}": (5, 2.0),
    "GET /webhooks/{application_id}/{interaction_token}/messages/{message_id}": (5, 2.0),
    "PATCH /webhooks/{application_id}/{interaction_token}/messages/{message_id}": (5, 2.0),
    "DELETE /webhooks/{application_id}/{interaction_token}/messages/{message_id}": (5, 2.0),
    "PUT /applications/{application_id}/commands": (4, 20.0),
    "GET /applications/{application_id}/commands": (5, 5.0),
    "PUT /applications/{application_id}/guilds/{guild_id}/commands": (4, 20.0),
    "GET /applications/{application_id}/guilds/{guild_id}/commands": (5, 5.0),
}


def merge_scenario(scenario):
    cfg = copy.deepcopy(DEFAULTS)
    for k, v in (scenario or {}).items():
        if k not in cfg:
            raise ValueError("unknown scenario option: %s" % k)
        cfg[k] = v
    return cfg


def bucket_hash(route):
    return hashlib.sha1(route.encode()).hexdigest()[:32]


class Snowflakes:
    def __init__(self):
        self._inc = itertools.count(1)

    def next(self):
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (1 << 17) | (next(self._inc) & 0xFFF))


def iso_now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06d+00:00" % int((t % 1) * 1e6)


def default_users():
    return [
        {"id": USER_ID, "username": "alice", "discriminator": "0", "global_name": "Alice",
         "avatar": None},
        {"id": OTHER_USER_ID, "username": "bob", "discriminator": "0", "global_name": "Bob",
         "avatar": None},
    ]


def default_guilds():
    return [{
        "id": GUILD_ID, "name": "Test Guild", "owner_id": USER_ID,
        "roles": [
            {"id": GUILD_ID, "name": "@everyone", "permissions": "1071698660929", "position": 0,
             "color": 0, "hoist": False, "managed": False, "mentionable": False},
            {"id": ROLE_ID, "name": "Operators", "permissions": "8", "position": 1, "color": 0,
             "hoist": False, "managed": False, "mentionable": True},
        ],
        "channels": [
            {"id": CHANNEL_ID, "type": 0, "name": "general", "position": 0, "parent_id": None,
             "topic": None, "nsfw": False, "permission_overwrites": []},
        ],
        "threads": [
            {"id": THREAD_ID, "type": 11, "name": "a thread", "parent_id": CHANNEL_ID,
             "owner_id": USER_ID, "message_count": 0, "member_count": 1,
             "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                                 "locked": False, "archive_timestamp": "2026-01-01T00:00:00+00:00"}},
        ],
        "member_roles": {USER_ID: [ROLE_ID], OTHER_USER_ID: []},
    }]


def truthy(v):
    return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
