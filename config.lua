-- config.lua: the deployment. Data only: this file returns one table.
-- `env "NAME"` reads an environment variable; any other undefined name is an error.
-- Check it with: claude-coordinator --config config.lua --check
return {
  discord = {
    -- The bot token. Never write it here: take it from the environment, or name a file
    -- that holds it with token_file (read once at start and at each reload).
    token = env "DISCORD_TOKEN",
    -- token_file = "/etc/claude-coordinator/token",

    -- REST base URL including the API version, and the gateway URL (no query string;
    -- leave it unset to ask GET /gateway/bot, as Discord recommends).
    api_url = "https://discord.com/api/v10",
    -- gateway_url = "wss://gateway.discord.gg",

    -- Gateway intents. MESSAGE_CONTENT is privileged: enable it in the developer portal.
    intents = { "GUILDS", "GUILD_MESSAGES", "DIRECT_MESSAGES", "MESSAGE_CONTENT" },
    compress = true,            -- zlib-stream transport compression
    -- On SIGTERM, keep the gateway session for the next start (close 4000 instead of
    -- 1000), so messages sent while the bot restarts are replayed to it, if it is back
    -- within two minutes. Leave false when the bot is really leaving.
    resume_after_restart = false,
    -- ca_file = "/path/ca.pem", -- extra CA bundle (tests); TLS is always verified
    -- shard_id = 0, shard_count = 1,
    guild_ids = {},             -- register slash commands in these guilds (instant); empty = global
    global_rate_per_second = 50,
  },

  claude = {
    command = "claude",         -- a path, or a name looked up on PATH
    args = {},                  -- extra arguments before the prompt
    -- model = "sonnet",        -- default model (unset: the CLI's own default)
    models = { "sonnet", "opus", "haiku" }, -- what /model offers (at most 25)
    -- permission_mode = "acceptEdits",
    allowed_tools = {},         -- e.g. { "Bash(git status)", "Edit" }
    -- append_system_prompt = "Answer briefly.",
    timeout = 900,              -- seconds a turn may run before it is stopped
    kill_grace = 10,            -- seconds between the polite stop and SIGKILL
    env = {},                   -- extra environment for claude, e.g. { ANTHROPIC_API_KEY = env "ANTHROPIC_API_KEY" }
  },

  -- Channels the bot serves, by channel id; every other channel is ignored. Threads
  -- inherit from their parent channel and get a session of their own.
  channels = {
    -- ["123456789012345678"] = {
    --   project = "/srv/app",    -- the directory Claude works in
    --   trigger = "mention",     -- "mention" (default) or "all" (every message)
    --   model = "opus",          -- this channel's default model
    --   users = {}, roles = {},  -- who may use it here; empty = anyone who can post
    -- },
  },

  -- Who may use the bot anywhere (in addition to per-channel lists), and DMs.
  access = {
    users = {},
    roles = {},
    dms = false,
    -- dm_project = "/srv/app",
  },

  limits = {
    queue_per_channel = 5,      -- messages waiting per channel before "busy"
    max_concurrent_runs = 4,    -- claude processes at once, over all channels
    cpu_budget = 2,             -- seconds a handler may run without yielding
    shutdown_grace = 10,        -- seconds running turns get to finish on SIGTERM
  },

  reply = {
    chunk_limit = 2000,         -- characters per Discord message
    max_chunks = 4,             -- above this, the reply is attached as a file
  },

  console = {
    -- project = "/srv/app",    -- console mode's project (default: current directory)
  },

  state_dir = "./state",        -- sessions database and other state
  log_level = "info",           -- debug, info, warn or error
  bot_file = "bot.lua",         -- the policy file, relative to this file
}
