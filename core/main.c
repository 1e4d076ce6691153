/* claude-coordinator: argv, then the host. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "host.h"
#include "log.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: claude-coordinator [--config FILE] [--console] [--check] [--log-level LEVEL]\n"
          "                          [--version] [--help]\n"
          "  --config FILE      the deployment file (default ./config.lua)\n"
          "  --console          run bot.lua against a local console instead of Discord\n"
          "  --check            load and validate the config and bot.lua, then exit 0 or 2\n"
          "  --log-level LEVEL  debug, info, warn or error (overrides the config)\n"
          "exit status: 0 normal stop, 1 fatal runtime error, 2 bad usage or configuration\n");
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"config", required_argument, NULL, 'c'}, {"console", no_argument, NULL, 'C'},
      {"check", no_argument, NULL, 'k'},        {"log-level", required_argument, NULL, 'l'},
      {"version", no_argument, NULL, 'V'},      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  host_options o = {.config_path = "./config.lua"};
  int opt;
  while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (opt) {
    case 'c': o.config_path = optarg; break;
    case 'C': o.console = 1; break;
    case 'k': o.check = 1; break;
    case 'l':
      if (log_parse_level(optarg) < 0) {
        fprintf(stderr, "claude-coordinator: --log-level: expected debug, info, warn or error\n");
        return 2;
      }
      o.log_level = optarg;
      break;
    case 'V': printf("claude-coordinator %s\n", CC_VERSION); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "claude-coordinator: unexpected argument: %s\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  return host_run(&o);
}
