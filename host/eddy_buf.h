/*
 * eddy_buf — a growable byte buffer. Used for output lines, arenas of
 * record bytes and anything else that is appended to and reset.
 */
#ifndef EDDY_BUF_H
#define EDDY_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct eddy_buf {
    char  *data;
    size_t len;
    size_t cap;
} eddy_buf;

#define EDDY_BUF_INIT {NULL, 0, 0}

/** @brief Make room for @p extra more bytes; aborts on out-of-memory. */
void eddy_buf_reserve(eddy_buf *b, size_t extra);
void eddy_buf_append(eddy_buf *b, const void *p, size_t n);
void eddy_buf_putc(eddy_buf *b, char c);
void eddy_buf_puts(eddy_buf *b, const char *s);
void eddy_buf_printf(eddy_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** @brief Append @p n bytes as a JSON string literal (quotes included). */
void eddy_buf_json_string(eddy_buf *b, const char *p, size_t n);
void eddy_buf_reset(eddy_buf *b);
void eddy_buf_free(eddy_buf *b);

#endif
