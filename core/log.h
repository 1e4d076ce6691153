/* One-line logging to stderr: "TIME LEVEL [component] message". Secrets registered with
 * log_add_secret() are replaced by "[redacted]" in every line, whatever logs them. */
#ifndef CC_LOG_H
#define CC_LOG_H

#include <stdarg.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "debug"/"info"/"warn"/"error"; returns -1 for anything else. */
int log_parse_level(const char *name);
const char *log_level_name(enum log_level level);
int log_add_secret(const char *secret);
void log_clear_secrets(void);
void log_msg(enum log_level level, const char *component, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level level, const char *component, const char *fmt, va_list ap);

#define log_debug(c, ...) log_msg(LOG_DEBUG, c, __VA_ARGS__)
#define log_info(c, ...) log_msg(LOG_INFO, c, __VA_ARGS__)
#define log_warn(c, ...) log_msg(LOG_WARN, c, __VA_ARGS__)
#define log_error(c, ...) log_msg(LOG_ERROR, c, __VA_ARGS__)

#endif
