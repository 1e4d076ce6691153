/* The executable's host: one Lua state with `core` preloaded, running the Lua host
 * (lua/coordinator/host.lua) on the loop. Kept free of Lua types so main.c is too. */
#ifndef CC_HOST_H
#define CC_HOST_H

typedef struct host_options {
  const char *config_path;
  const char *log_level; /* NULL: from the config */
  int console;
  int check;
} host_options;

/* Returns the process exit code: 0 normal stop, 1 fatal runtime error, 2 bad config. */
int host_run(const host_options *opts);

#endif
