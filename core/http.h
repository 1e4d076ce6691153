/* HTTP client: libcurl's multi interface driven by the libuv loop (one uv_poll per socket
 * curl asks for, one uv_timer for curl's timeouts, as curl's docs/examples/multi-uv.c).
 * Connections are kept alive and reused between requests of one client; HTTP/2 is used
 * where the server offers it over TLS. TLS peers are always verified (a CA file may be
 * given, for tests).
 *
 * http_start() either fails synchronously (negative errno, the callback never fires) or
 * succeeds and the callback fires exactly once, later, from the loop; the callback owns
 * the request and frees it with http_req_free(). http_cancel() instead removes the
 * request (its callback then never fires) and frees it. */
#ifndef CC_HTTP_H
#define CC_HTTP_H

#include <stddef.h>
#include <uv.h>

typedef struct http_client http_client;
typedef struct http_req http_req;
typedef void (*http_done_fn)(http_req *req, void *ud);

typedef struct http_header {
  const char *name; /* lower case */
  const char *value;
} http_header;

typedef struct http_opts {
  const char *method;   /* GET if NULL */
  const char *url;
  const char *const *headers; /* "Name: value" strings, NULL-terminated, or NULL */
  const char *body;     /* copied; may be NULL */
  size_t body_len;
  double timeout;       /* seconds for the whole request; 0 = 30 s */
  const char *ca_file;  /* NULL: the system's CAs */
  int insecure;         /* tests only: skip TLS verification (never used by the bot) */
} http_opts;

int http_client_new(uv_loop_t *loop, http_client **out);
/* Cancels every request still running (their callbacks never fire), then frees the
 * client once its handles are closed. */
void http_client_close(http_client *c);
size_t http_client_active(const http_client *c);

int http_start(http_client *c, const http_opts *o, http_done_fn done, void *ud,
               http_req **out);
void http_cancel(http_req *r);
void http_req_free(http_req *r);

/* Results, valid until http_req_free(). error is NULL when a response arrived (whatever
 * its status); otherwise "timeout", "connect: ...", "tls: ..." or "http: ...". */
const char *http_req_error(const http_req *r);
int http_req_status(const http_req *r);
const char *http_req_body(const http_req *r, size_t *len);
size_t http_req_header_count(const http_req *r);
http_header http_req_header(const http_req *r, size_t i);
/* First header of that name (case-insensitive), or NULL. */
const char *http_req_find_header(const http_req *r, const char *name);
double http_req_elapsed(const http_req *r); /* seconds, start to completion */

#endif
