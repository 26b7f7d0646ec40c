/*
 * eddy_buf — growable byte buffer (see eddy_buf.h).
 */
#include "eddy_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void eddy_buf_reserve(eddy_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) {
        return;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        fprintf(stderr, "eddy: out of memory (%zu bytes)\n", cap);
        abort();
    }
    b->data = p;
    b->cap = cap;
}

void eddy_buf_append(eddy_buf *b, const void *p, size_t n)
{
    eddy_buf_reserve(b, n);
    if (n) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
}

void eddy_buf_putc(eddy_buf *b, char c)
{
    eddy_buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void eddy_buf_puts(eddy_buf *b, const char *s)
{
    eddy_buf_append(b, s, strlen(s));
}

void eddy_buf_printf(eddy_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    eddy_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void eddy_buf_json_string(eddy_buf *b, const char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    eddy_buf_reserve(b, n + 2);
    b->data[b->len++] = '"';
    size_t i = 0;
    while (i < n) {
        /* copy the longest run that needs no escaping */
        size_t j = i;
        while (j < n) {
            unsigned char c = (unsigned char)p[j];
            if (c < 0x20 || c == '"' || c == '\\' || c == 0x7f) {
                break;
            }
            j++;
        }
        if (j > i) {
            eddy_buf_reserve(b, j - i + 1);
            memcpy(b->data + b->len, p + i, j - i);
            b->len += j - i;
            i = j;
        }
        if (i >= n) {
            break;
        }
        unsigned char c = (unsigned char)p[i++];
        eddy_buf_reserve(b, 7);
        char *o = b->data + b->len;
        switch (c) {
        case '"':  o[0] = '\\'; o[1] = '"';  b->len += 2; break;
        case '\\': o[0] = '\\'; o[1] = '\\'; b->len += 2; break;
        case '\n': o[0] = '\\'; o[1] = 'n';  b->len += 2; break;
        case '\r': o[0] = '\\'; o[1] = 'r';  b->len += 2; break;
        case '\t': o[0] = '\\'; o[1] = 't';  b->len += 2; break;
        default:
            o[0] = '\\'; o[1] = 'u'; o[2] = '0'; o[3] = '0';
            o[4] = hex[c >> 4]; o[5] = hex[c & 15];
            b->len += 6;
        }
    }
    eddy_buf_reserve(b, 1);
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
}

void eddy_buf_reset(eddy_buf *b)
{
    b->len = 0;
    if (b->data) {
        b->data[0] = '\0';
    }
}

void eddy_buf_free(eddy_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
