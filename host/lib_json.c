/*
 * lib_json.c — eddy's JSON codec for the "json" serde, as Lua C functions.
 * Why not lua-cjson alone: its encoder keeps at most 14 significant digits,
 * so integers above 10^14 (microsecond timestamps, 64-bit-ish ids) come out
 * changed, and it cannot tell an empty array from an empty object. Here
 * integers up to 2^53 are written exactly, other numbers in the shortest form
 * that reads back to the same double, and decoded arrays carry a metatable so
 * that [] stays []. JSON null is cjson.null (a NULL lightuserdata).
 */
#include "lib_json.h"
#include "eddy_buf.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 1000

static const char array_mt_key = 'a';   /* registry: metatable of decoded arrays */

/* Length of the UTF-8 sequence at s (1 to 4), or 0 when the bytes there are not
 * UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
 * JSON text is UTF-8: a value with other bytes in a string is refused when
 * decoded (as Jackson refuses it) and when encoded (eddy would write JSON that
 * strict readers refuse). */
static int utf8_seq(const unsigned char *s, const unsigned char *end)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xc2 || c > 0xf4) return 0;
    if (c < 0xe0) return end - s >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c < 0xf0) {
        if (end - s < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return 0;
        if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f)) return 0;
        return 3;
    }
    if (end - s < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80) {
        return 0;
    }
    if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f)) return 0;
    return 4;
}

/* The offset of the first byte of p[0..n) that is not UTF-8, or -1. */
static long utf8_invalid_at(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p, *end = s + n;
    while (s < end) {
        if (end - s >= 8) {                   /* ASCII 8 bytes at a time */
            uint64_t w;
            memcpy(&w, s, 8);
            if (!(w & 0x8080808080808080ull)) {
                s += 8;
                continue;
            }
        }
        if (*s < 0x80) {
            s++;
            continue;
        }
        int len = utf8_seq(s, end);
        if (len == 0) return (long)(s - (const unsigned char *)p);
        s += len;
    }
    return -1;
}

/* ---- encode ---- */

typedef struct enc {
    lua_State *L;
    eddy_buf   b;
    const char *err;
    char        errbuf[128];
} enc;

static void put_number(enc *e, double v)
{
    char tmp[40];
    if (isnan(v) || isinf(v)) {
        e->err = "cannot encode NaN or infinity as JSON";
        return;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {        /* exact integer */
        snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {                /* shortest round trip */
            snprintf(tmp, sizeof tmp, "%.*g", prec, v);
            if (strtod(tmp, NULL) == v) {
                break;
            }
        }
    }
    eddy_buf_puts(&e->b, tmp);
}

static void encode_value(enc *e, int idx, int depth);

/* A Lua string as a JSON string; 0 (and e->err) when it is not UTF-8. */
static int put_string(enc *e, const char *s, size_t n)
{
    long bad = utf8_invalid_at(s, n);
    if (bad >= 0) {
        snprintf(e->errbuf, sizeof e->errbuf, "cannot encode a string that is not UTF-8 as "
                 "JSON (byte 0x%02x at offset %ld)", (unsigned char)s[bad], bad);
        e->err = e->errbuf;
        return 0;
    }
    eddy_buf_json_string(&e->b, s, n);
    return 1;
}

/* [-0, +0] Is the table at idx an array? Sets *len to its length. */
static int is_array(lua_State *L, int idx, size_t *len)
{
    size_t count = 0;
    double max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TNUMBER) {
            lua_pop(L, 1);
            return 0;
        }
        double k = lua_tonumber(L, -1);
        if (k < 1 || k != floor(k)) {
            lua_pop(L, 1);
            return 0;
        }
        if (k > max) {
            max = k;
        }
        count++;
    }
    if (count == 0) {                     /* empty: an array only if decoded as one */
        *len = 0;
        if (!lua_getmetatable(L, idx)) {
            return 0;
        }
        lua_pushlightuserdata(L, (void *)&array_mt_key);
        lua_rawget(L, LUA_REGISTRYINDEX);
        int arr = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        return arr;
    }
    if (max > (double)count * 2 && max > 10) {
        return 0;                         /* too sparse: an object with number keys */
    }
    *len = (size_t)max;
    return 1;
}

static void encode_table(enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    size_t len;
    if (depth > MAX_DEPTH) {
        e->err = "cannot encode JSON: nested too deep (or a table that contains itself)";
        return;
    }
    luaL_checkstack(L, 6, "JSON nesting");
    if (is_array(L, idx, &len)) {
        eddy_buf_putc(&e->b, '[');
        for (size_t i = 1; i <= len && !e->err; i++) {
            if (i > 1) {
                eddy_buf_putc(&e->b, ',');
            }
            lua_rawgeti(L, idx, (int)i);
            encode_value(e, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
        }
        eddy_buf_putc(&e->b, ']');
        return;
    }
    eddy_buf_putc(&e->b, '{');
    int first = 1;
    lua_pushnil(L);
    while (!e->err && lua_next(L, idx)) {
        if (!first) {
            eddy_buf_putc(&e->b, ',');
        }
        first = 0;
        int kt = lua_type(L, -2);
        if (kt == LUA_TSTRING) {
            size_t kl;
            const char *k = lua_tolstring(L, -2, &kl);
            if (!put_string(e, k, kl)) {
                lua_pop(L, 2);
                return;
            }
        } else if (kt == LUA_TNUMBER) {
            eddy_buf_putc(&e->b, '"');
            put_number(e, lua_tonumber(L, -2));
            eddy_buf_putc(&e->b, '"');
        } else {
            snprintf(e->errbuf, sizeof e->errbuf, "cannot encode a table key of type %s as JSON",
                     lua_typename(L, kt));
            e->err = e->errbuf;
            lua_pop(L, 2);
            return;
        }
        eddy_buf_putc(&e->b, ':');
        encode_value(e, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
    }
    if (e->err) {
        return;
    }
    eddy_buf_putc(&e->b, '}');
}

static void encode_value(enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        eddy_buf_append(&e->b, "null", 4);
        break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) {
            eddy_buf_append(&e->b, "true", 4);
        } else {
            eddy_buf_append(&e->b, "false", 5);
        }
        break;
    case LUA_TNUMBER:
        put_number(e, lua_tonumber(L, idx));
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        put_string(e, s, n);
        break;
    }
    case LUA_TTABLE:
        encode_table(e, idx, depth);
        break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) {       /* cjson.null / eddy.null */
            eddy_buf_append(&e->b, "null", 4);
            break;
        }
        /* fallthrough */
    default:
        snprintf(e->errbuf, sizeof e->errbuf, "cannot encode a %s as JSON",
                 luaL_typename(L, idx));
        e->err = e->errbuf;
    }
}

/* json_encode(v) -> string | nil, err   [-1, +1..2] */
static int json_encode(lua_State *L)
{
    enc e = {L, EDDY_BUF_INIT, NULL, ""};
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    encode_value(&e, 1, 0);
    if (e.err) {
        eddy_buf_free(&e.b);
        lua_pushnil(L);
        lua_pushstring(L, e.err);
        return 2;
    }
    lua_pushlstring(L, e.b.data ? e.b.data : "", e.b.len);
    eddy_buf_free(&e.b);
    return 1;
}

/* ---- decode ---- */

typedef struct dec {
    lua_State  *L;
    const char *p, *start, *end;
    const char *err;
    char        errbuf[160];
    eddy_buf    s;         /* scratch for strings with escapes */
} dec;

static int dfail(dec *d, const char *what)
{
    if (!d->err) {
        snprintf(d->errbuf, sizeof d->errbuf, "%s at character %d", what,
                 (int)(d->p - d->start) + 1);
        d->err = d->errbuf;
    }
    return -1;
}

static void dskip(dec *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r')) {
        d->p++;
    }
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static void put_utf8(eddy_buf *b, unsigned cp)
{
    char u[4];
    int n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xc0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3f)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f)); n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); u[3] = (char)(0x80 | (cp & 0x3f)); n = 4;
    }
    eddy_buf_append(b, u, (size_t)n);
}

/* Push the string at d->p (on its opening quote). [-0, +1] */
static int dstring(dec *d)
{
    const char *s = ++d->p;
    unsigned char any = 0;                    /* the bytes or'ed: any >= 0x80? */
    while (s < d->end && *s != '"' && *s != '\\' && (unsigned char)*s >= 0x20) {
        any |= (unsigned char)*s;
        s++;
    }
    if (any & 0x80) {
        long bad = utf8_invalid_at(d->p, (size_t)(s - d->p));
        if (bad >= 0) {
            d->p += bad;
            return dfail(d, "invalid UTF-8 in string");
        }
    }
    if (s < d->end && *s == '"') {            /* no escapes: push as is */
        lua_pushlstring(d->L, d->p, (size_t)(s - d->p));
        d->p = s + 1;
        return 0;
    }
    eddy_buf_reset(&d->s);
    eddy_buf_append(&d->s, d->p, (size_t)(s - d->p));
    d->p = s;
    while (d->p < d->end) {
        char c = *d->p;
        if (c == '"') {
            d->p++;
            lua_pushlstring(d->L, d->s.data ? d->s.data : "", d->s.len);
            return 0;
        }
        if ((unsigned char)c < 0x20) {
            return dfail(d, "control character in string");
        }
        if (c != '\\') {
            int len = utf8_seq((const unsigned char *)d->p, (const unsigned char *)d->end);
            if (len == 0) {
                return dfail(d, "invalid UTF-8 in string");
            }
            eddy_buf_append(&d->s, d->p, (size_t)len);
            d->p += len;
            continue;
        }
        if (d->p + 1 >= d->end) {
            break;
        }
        char x = d->p[1];
        d->p += 2;
        switch (x) {
        case '"': eddy_buf_putc(&d->s, '"'); break;
        case '\\': eddy_buf_putc(&d->s, '\\'); break;
        case '/': eddy_buf_putc(&d->s, '/'); break;
        case 'b': eddy_buf_putc(&d->s, '\b'); break;
        case 'f': eddy_buf_putc(&d->s, '\f'); break;
        case 'n': eddy_buf_putc(&d->s, '\n'); break;
        case 'r': eddy_buf_putc(&d->s, '\r'); break;
        case 't': eddy_buf_putc(&d->s, '\t'); break;
        case 'u': {
            unsigned cp, lo;
            if (d->end - d->p < 4 || hex4(d->p, &cp) != 0) {
                return dfail(d, "bad \\u escape");
            }
            d->p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff && d->end - d->p >= 6 && d->p[0] == '\\' &&
                d->p[1] == 'u' && hex4(d->p + 2, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                d->p += 6;
            }
            if (cp >= 0xd800 && cp <= 0xdfff) {      /* no UTF-8 for a lone surrogate */
                d->p -= 6;
                return dfail(d, "lone surrogate in \\u escape");
            }
            put_utf8(&d->s, cp);
            break;
        }
        default:
            return dfail(d, "bad escape in string");
        }
    }
    return dfail(d, "unterminated string");
}

static int dnumber(dec *d)
{
    const char *s = d->p;
    const char *q = s;
    if (q < d->end && *q == '-') q++;
    if (q >= d->end || *q < '0' || *q > '9') {
        return dfail(d, "expected a value");
    }
    if (*q == '0' && q + 1 < d->end && q[1] >= '0' && q[1] <= '9') {
        return dfail(d, "leading zero in number");
    }
    int64_t iv = 0;
    int digits = 0, integral = 1;
    while (q < d->end && *q >= '0' && *q <= '9') {
        if (digits < 15) {
            iv = iv * 10 + (*q - '0');   /* used only up to 15 digits: it cannot overflow */
        }
        digits++;
        q++;
    }
    if (q < d->end && *q == '.') {
        integral = 0;
        q++;
        if (q >= d->end || *q < '0' || *q > '9') return dfail(d, "bad number");
        while (q < d->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < d->end && (*q == 'e' || *q == 'E')) {
        integral = 0;
        q++;
        if (q < d->end && (*q == '+' || *q == '-')) q++;
        if (q >= d->end || *q < '0' || *q > '9') return dfail(d, "bad number");
        while (q < d->end && *q >= '0' && *q <= '9') q++;
    }
    if (integral && digits <= 15) {
        lua_pushnumber(d->L, (lua_Number)(*s == '-' ? -iv : iv));
    } else {
        char tmp[64];
        size_t n = (size_t)(q - s);
        double v;
        if (n < sizeof tmp) {
            memcpy(tmp, s, n);
            tmp[n] = '\0';
            v = strtod(tmp, NULL);
        } else {
            char *big = malloc(n + 1);
            if (!big) return dfail(d, "out of memory");
            memcpy(big, s, n);
            big[n] = '\0';
            v = strtod(big, NULL);
            free(big);
        }
        if (isinf(v)) {
            return dfail(d, "number out of range");
        }
        lua_pushnumber(d->L, v);
    }
    d->p = q;
    return 0;
}

static int dvalue(dec *d, int depth);

static int darray(dec *d, int depth)
{
    lua_State *L = d->L;
    d->p++;
    lua_createtable(L, 4, 0);
    lua_pushlightuserdata(L, (void *)&array_mt_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_setmetatable(L, -2);
    dskip(d);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
        return 0;
    }
    for (int i = 1;; i++) {
        if (dvalue(d, depth + 1)) return -1;
        lua_rawseti(L, -2, i);
        dskip(d);
        if (d->p < d->end && *d->p == ',') { d->p++; continue; }
        if (d->p < d->end && *d->p == ']') { d->p++; return 0; }
        return dfail(d, "expected ',' or ']'");
    }
}

static int dobject(dec *d, int depth)
{
    lua_State *L = d->L;
    d->p++;
    lua_createtable(L, 0, 4);
    dskip(d);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        return 0;
    }
    for (;;) {
        dskip(d);
        if (d->p >= d->end || *d->p != '"') return dfail(d, "expected a string key");
        if (dstring(d)) return -1;
        dskip(d);
        if (d->p >= d->end || *d->p != ':') return dfail(d, "expected ':'");
        d->p++;
        if (dvalue(d, depth + 1)) return -1;
        lua_rawset(L, -3);
        dskip(d);
        if (d->p < d->end && *d->p == ',') { d->p++; continue; }
        if (d->p < d->end && *d->p == '}') { d->p++; return 0; }
        return dfail(d, "expected ',' or '}'");
    }
}

static int dlit(dec *d, const char *lit, size_t n)
{
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, lit, n) != 0) {
        return dfail(d, "expected a value");
    }
    d->p += n;
    return 0;
}

static int dvalue(dec *d, int depth)
{
    if (depth > MAX_DEPTH) {
        return dfail(d, "nested too deep");
    }
    if (!lua_checkstack(d->L, 4)) {
        return dfail(d, "nested too deep");
    }
    dskip(d);
    if (d->p >= d->end) {
        return dfail(d, "unexpected end of input");
    }
    switch (*d->p) {
    case '{': return dobject(d, depth);
    case '[': return darray(d, depth);
    case '"': return dstring(d);
    case 't': if (dlit(d, "true", 4)) return -1; lua_pushboolean(d->L, 1); return 0;
    case 'f': if (dlit(d, "false", 5)) return -1; lua_pushboolean(d->L, 0); return 0;
    case 'n': if (dlit(d, "null", 4)) return -1; lua_pushlightuserdata(d->L, NULL); return 0;
    default: return dnumber(d);
    }
}

/* json_decode(s) -> value | nil, err   [-1, +1..2] */
static int json_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    dec d = {L, s, s, s + n, NULL, "", EDDY_BUF_INIT};
    lua_settop(L, 1);
    int rc = dvalue(&d, 0);
    if (rc == 0) {
        dskip(&d);
        if (d.p != d.end) {
            rc = dfail(&d, "trailing characters");
        }
    }
    eddy_buf_free(&d.s);
    if (rc) {
        lua_settop(L, 1);
        lua_pushnil(L);
        lua_pushstring(L, d.err);
        return 2;
    }
    return 1;
}

int eddy_open_json(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&array_mt_key);
    lua_newtable(L);
    lua_pushstring(L, "array");
    lua_setfield(L, -2, "__jsontype");
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_newtable(L);
    lua_pushcfunction(L, json_encode);
    lua_setfield(L, -2, "encode");
    lua_pushcfunction(L, json_decode);
    lua_setfield(L, -2, "decode");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_pushlightuserdata(L, (void *)&array_mt_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_setfield(L, -2, "array_mt");
    return 1;
}
