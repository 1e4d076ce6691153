#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define LOG_MAX_SECRETS 8
#define LOG_LINE_MAX 8192

static enum log_level current_level = LOG_INFO;
static char *secrets[LOG_MAX_SECRETS];
static int nsecrets;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level) { current_level = level; }
enum log_level log_get_level(void) { return current_level; }
const char *log_level_name(enum log_level level) { return level_names[level]; }

int log_parse_level(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcasecmp(name, level_names[i]) == 0) return i;
  return -1;
}

int log_add_secret(const char *secret) {
  if (!secret || strlen(secret) < 4) return -1; /* redacting tiny strings would mangle logs */
  for (int i = 0; i < nsecrets; i++)
    if (strcmp(secrets[i], secret) == 0) return 0;
  if (nsecrets == LOG_MAX_SECRETS) return -1;
  secrets[nsecrets] = strdup(secret);
  if (!secrets[nsecrets]) return -1;
  nsecrets++;
  return 0;
}

void log_clear_secrets(void) {
  for (int i = 0; i < nsecrets; i++) free(secrets[i]);
  nsecrets = 0;
}

/* Replaces every registered secret in buf (in place; "[redacted]" may be longer than a
 * short secret, so the result is cut at cap). */
static void redact(char *buf, size_t cap) {
  static const char mark[] = "[redacted]";
  for (int i = 0; i < nsecrets; i++) {
    size_t slen = strlen(secrets[i]);
    char *p = buf;
    while ((p = strstr(p, secrets[i])) != NULL) {
      size_t tail = strlen(p + slen);
      size_t mlen = sizeof mark - 1;
      size_t room = cap - (size_t)(p - buf) - 1;
      if (mlen > room) mlen = room;
      if (mlen + tail > room) tail = room - mlen;
      memmove(p + mlen, p + slen, tail);
      memcpy(p, mark, mlen);
      p[mlen + tail] = '\0';
      p += mlen;
    }
  }
}

void log_vmsg(enum log_level level, const char *component, const char *fmt, va_list ap) {
  if (level < current_level) return;
  char line[LOG_LINE_MAX];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], component);
  if (n < 0) return;
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  /* One event, one line: embedded newlines (tracebacks) become " | ". */
  for (char *p = line + n; *p; p++)
    if (*p == '\n') *p = '|';
    else if (*p == '\t') *p = ' ';
  redact(line, sizeof line);
  fprintf(stderr, "%s\n", line);
}

void log_msg(enum log_level level, const char *component, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_vmsg(level, component, fmt, ap);
  va_end(ap);
}
