/*
 * eddy_envelope — parse and write kcat -J style JSON lines (see eddy_envelope.h).
 * A small, strict JSON reader for exactly this shape: one object per line.
 */
#include "eddy_envelope.h"
#include "eddy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    char       *p;
    char       *end;
    char       *errstr;
    size_t      errstr_size;
} parser;

static int fail(parser *ps, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->errstr, ps->errstr_size, fmt, ap);
    va_end(ap);
    return EDDY_EPARSE;
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r' || *ps->p == '\n')) {
        ps->p++;
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(parser *ps, const char *s, unsigned *out)
{
    if (ps->end - s < 4) {
        return fail(ps, "truncated \\u escape");
    }
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s[i]);
        if (h < 0) {
            return fail(ps, "bad \\u escape");
        }
        v = (v << 4) | (unsigned)h;
    }
    *out = v;
    return 0;
}

/* Parse a string at ps->p (on the opening quote); unescape in place.
 * A \u00XX escape below 0x100 yields the single byte XX, so binary keys
 * written by eddy_buf_json_string read back byte for byte. */
static int parse_string(parser *ps, const char **out, size_t *out_len)
{
    char *s = ps->p + 1;
    char *start = s;
    /* fast path: no escapes, nothing to copy */
    while (s < ps->end && *s != '"' && *s != '\\') {
        s++;
    }
    char *w = s;
    while (s < ps->end) {
        char c = *s;
        if (c == '"') {
            *out = start;
            *out_len = (size_t)(w - start);
            ps->p = s + 1;
            return 0;
        }
        if (c != '\\') {
            *w++ = *s++;
            continue;
        }
        if (s + 1 >= ps->end) {
            break;
        }
        char e = s[1];
        s += 2;
        switch (e) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned cp;
            int rc = read_hex4(ps, s, &cp);
            if (rc) {
                return rc;
            }
            s += 4;
            if (cp >= 0xd800 && cp <= 0xdbff && ps->end - s >= 6 && s[0] == '\\' && s[1] == 'u') {
                unsigned lo;
                if (read_hex4(ps, s + 2, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    s += 6;
                }
            }
            if (cp < 0x100) {
                *w++ = (char)cp;             /* a byte, as eddy and kcat write them */
            } else if (cp < 0x800) {
                *w++ = (char)(0xc0 | (cp >> 6));
                *w++ = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                *w++ = (char)(0xe0 | (cp >> 12));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *w++ = (char)(0x80 | (cp & 0x3f));
            } else {
                *w++ = (char)(0xf0 | (cp >> 18));
                *w++ = (char)(0x80 | ((cp >> 12) & 0x3f));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *w++ = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default:
            return fail(ps, "bad escape \\%c in string", e);
        }
    }
    return fail(ps, "unterminated string");
}

/* strtoll/strtod read up to a character that is not part of the number, and the
 * line is not NUL-terminated: they read a copy of its next bytes (at most 63). */
static char *number_copy(const parser *ps, char *tmp, size_t size)
{
    size_t n = (size_t)(ps->end - ps->p);
    if (n > size - 1) {
        n = size - 1;
    }
    memcpy(tmp, ps->p, n);
    tmp[n] = '\0';
    return tmp;
}

static int parse_int(parser *ps, int64_t *out)
{
    char tmp[64], *endp;
    char *s = number_copy(ps, tmp, sizeof tmp);
    errno = 0;
    double d;
    long long v = strtoll(s, &endp, 10);
    if (endp == s) {
        return fail(ps, "expected a number");
    }
    if (*endp == '.' || *endp == 'e' || *endp == 'E') {
        d = strtod(s, &endp);           /* 1.7e12 style timestamps */
        if (!(d > -9.2e18 && d < 9.2e18)) {
            return fail(ps, "number out of range");
        }
        v = (long long)d;
    } else if (errno == ERANGE) {
        return fail(ps, "number out of range");
    }
    ps->p += endp - s;
    *out = v;
    return 0;
}

static int skip_value(parser *ps, int depth);

static int expect_lit(parser *ps, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0) {
        return fail(ps, "unexpected character '%c'", *ps->p);
    }
    ps->p += n;
    return 0;
}

static int skip_value(parser *ps, int depth)
{
    const char *s;
    size_t n;
    int64_t i;
    if (depth > 64) {
        return fail(ps, "nested too deep");
    }
    skip_ws(ps);
    if (ps->p >= ps->end) {
        return fail(ps, "unexpected end of line");
    }
    switch (*ps->p) {
    case '"': return parse_string(ps, &s, &n);
    case 't': return expect_lit(ps, "true");
    case 'f': return expect_lit(ps, "false");
    case 'n': return expect_lit(ps, "null");
    case '{':
    case '[': {
        char close = *ps->p == '{' ? '}' : ']';
        int obj = close == '}';
        ps->p++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return 0;
        }
        for (;;) {
            int rc;
            if (obj) {
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != '"') {
                    return fail(ps, "expected a field name");
                }
                if ((rc = parse_string(ps, &s, &n))) return rc;
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != ':') {
                    return fail(ps, "expected ':'");
                }
                ps->p++;
            }
            if ((rc = skip_value(ps, depth + 1))) return rc;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                continue;
            }
            if (ps->p < ps->end && *ps->p == close) {
                ps->p++;
                return 0;
            }
            return fail(ps, "expected ',' or '%c'", close);
        }
    }
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) {
            char tmp[64], *endp;
            char *num = number_copy(ps, tmp, sizeof tmp);
            strtod(num, &endp);
            if (endp == num) {
                return fail(ps, "bad number");
            }
            ps->p += endp - num;
            (void)i;
            return 0;
        }
        return fail(ps, "unexpected character '%c'", *ps->p);
    }
}

/* A string or null: len -1 for null. */
static int parse_nullable_string(parser *ps, const char *field, const char **out, ssize_t *len)
{
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == 'n') {
        *out = NULL;
        *len = -1;
        return expect_lit(ps, "null");
    }
    if (ps->p >= ps->end || *ps->p != '"') {
        return fail(ps, "field \"%s\" must be a string or null", field);
    }
    size_t n;
    int rc = parse_string(ps, out, &n);
    *len = (ssize_t)n;
    return rc;
}

static int parse_headers(parser *ps, eddy_envelope *env)
{
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == 'n') {
        return expect_lit(ps, "null");
    }
    if (ps->p >= ps->end || *ps->p != '[') {
        return fail(ps, "field \"headers\" must be an array [name, value, ...]");
    }
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return 0;
    }
    for (;;) {
        const char *name, *value;
        ssize_t name_len, value_len;
        int rc = parse_nullable_string(ps, "headers", &name, &name_len);
        if (rc) return rc;
        if (name_len < 0) {
            return fail(ps, "a header name must be a string");
        }
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ',') {
            return fail(ps, "headers must come in name, value pairs");
        }
        ps->p++;
        if ((rc = parse_nullable_string(ps, "headers", &value, &value_len))) return rc;
        if (env->nheaders == env->hcap) {
            int cap = env->hcap ? env->hcap * 2 : 8;
            eddy_header *h = realloc(env->headers, sizeof(*h) * (size_t)cap);
            if (!h) {
                return fail(ps, "out of memory");
            }
            env->headers = h;
            env->hcap = cap;
        }
        eddy_header *h = &env->headers[env->nheaders++];
        h->name = name;
        h->name_len = (size_t)name_len;
        h->value = value;
        h->value_len = value_len;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return 0;
        }
        return fail(ps, "expected ',' or ']' in headers");
    }
}

int eddy_envelope_parse(eddy_envelope *env, char *line, size_t len,
                        char *errstr, size_t errstr_size)
{
    parser ps = {line, line + len, errstr, errstr_size};
    int has_payload = 0;
    int rc;

    env->topic = NULL;
    env->topic_len = 0;
    env->partition = -1;
    env->offset = -1;
    env->ts = 0;
    env->has_ts = 0;
    env->key = NULL;
    env->key_len = -1;
    env->payload = NULL;
    env->payload_len = -1;
    env->nheaders = 0;

    skip_ws(&ps);
    if (ps.p >= ps.end || *ps.p != '{') {
        return fail(&ps, "not a JSON object");
    }
    ps.p++;
    skip_ws(&ps);
    if (ps.p < ps.end && *ps.p == '}') {
        ps.p++;
        goto done;
    }
    for (;;) {
        const char *name;
        size_t nlen;
        skip_ws(&ps);
        if (ps.p >= ps.end || *ps.p != '"') {
            return fail(&ps, "expected a field name");
        }
        if ((rc = parse_string(&ps, &name, &nlen))) return rc;
        skip_ws(&ps);
        if (ps.p >= ps.end || *ps.p != ':') {
            return fail(&ps, "expected ':' after \"%.*s\"", (int)nlen, name);
        }
        ps.p++;
        skip_ws(&ps);
#define IS(lit) (nlen == sizeof(lit) - 1 && memcmp(name, lit, nlen) == 0)
        if (IS("payload")) {
            has_payload = 1;
            rc = parse_nullable_string(&ps, "payload", &env->payload, &env->payload_len);
        } else if (IS("key")) {
            rc = parse_nullable_string(&ps, "key", &env->key, &env->key_len);
        } else if (IS("topic")) {
            ssize_t tl;
            rc = parse_nullable_string(&ps, "topic", &env->topic, &tl);
            env->topic_len = tl < 0 ? 0 : (size_t)tl;
            if (tl <= 0) {
                env->topic = NULL;
            }
        } else if (IS("partition") || IS("offset") || IS("ts")) {
            int64_t v = 0;
            if (ps.p < ps.end && *ps.p == 'n') {
                rc = expect_lit(&ps, "null");
            } else if ((rc = parse_int(&ps, &v)) == 0) {
                if (IS("partition")) {
                    if (v < 0 || v > INT32_MAX) {
                        return fail(&ps, "partition %lld out of range", (long long)v);
                    }
                    env->partition = (int32_t)v;
                } else if (IS("offset")) {
                    env->offset = v;
                } else {
                    env->ts = v;
                    env->has_ts = 1;
                }
            }
        } else if (IS("headers")) {
            rc = parse_headers(&ps, env);
        } else {
            rc = skip_value(&ps, 0);
        }
#undef IS
        if (rc) return rc;
        skip_ws(&ps);
        if (ps.p < ps.end && *ps.p == ',') {
            ps.p++;
            continue;
        }
        if (ps.p < ps.end && *ps.p == '}') {
            ps.p++;
            break;
        }
        return fail(&ps, "expected ',' or '}'");
    }
done:
    skip_ws(&ps);
    if (ps.p != ps.end) {
        return fail(&ps, "trailing characters after the object");
    }
    if (!has_payload) {
        return fail(&ps, "missing field \"payload\"");
    }
    return 0;
}

#define PUT_LIT(out, lit) eddy_buf_append((out), (lit), sizeof(lit) - 1)

/* Append a decimal integer (faster than printf on the hot path). */
static void put_int(eddy_buf *out, int64_t v)
{
    char tmp[24];
    int i = sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        tmp[--i] = '-';
    }
    eddy_buf_append(out, tmp + i, sizeof tmp - (size_t)i);
}

void eddy_envelope_write(eddy_buf *out, const char *topic, size_t topic_len,
                         int32_t partition, int64_t offset, int64_t ts,
                         const char *key, ssize_t key_len,
                         const char *payload, ssize_t payload_len,
                         const eddy_header *headers, int nheaders)
{
    PUT_LIT(out, "{\"topic\":");
    eddy_buf_json_string(out, topic, topic_len);
    PUT_LIT(out, ",\"partition\":");
    put_int(out, partition);
    PUT_LIT(out, ",\"offset\":");
    put_int(out, offset);
    PUT_LIT(out, ",\"tstype\":\"create\",\"ts\":");
    put_int(out, ts);
    if (nheaders > 0) {
        PUT_LIT(out, ",\"headers\":[");
        for (int i = 0; i < nheaders; i++) {
            if (i) {
                eddy_buf_putc(out, ',');
            }
            eddy_buf_json_string(out, headers[i].name, headers[i].name_len);
            eddy_buf_putc(out, ',');
            if (headers[i].value_len < 0) {
                PUT_LIT(out, "null");
            } else {
                eddy_buf_json_string(out, headers[i].value, (size_t)headers[i].value_len);
            }
        }
        eddy_buf_putc(out, ']');
    }
    PUT_LIT(out, ",\"key\":");
    if (key_len < 0) {
        PUT_LIT(out, "null");
    } else {
        eddy_buf_json_string(out, key, (size_t)key_len);
    }
    PUT_LIT(out, ",\"payload\":");
    if (payload_len < 0) {
        PUT_LIT(out, "null");
    } else {
        eddy_buf_json_string(out, payload, (size_t)payload_len);
    }
    PUT_LIT(out, "}\n");
}

void eddy_envelope_free(eddy_envelope *env)
{
    free(env->headers);
    env->headers = NULL;
    env->nheaders = env->hcap = 0;
}
