/*
 * t_envelope.c — unit tests of eddy_envelope.h: the kcat -J style JSON line
 * reader and writer of file mode. Every parse error path is exercised; the
 * writer is checked byte for byte and by round-tripping every byte value.
 */
#include "eddy.h"
#include "eddy_buf.h"
#include "eddy_envelope.h"
#include "testhelp.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static eddy_envelope env;
static char errbuf[256];
static char line[1 << 16];

/* Parse @p n bytes of @p s the way file mode hands a line over: in a larger
 * buffer, followed by the newline that ended it (not a NUL). */
static int parse_n(const char *s, size_t n)
{
    memcpy(line, s, n);
    line[n] = '\n';
    line[n + 1] = 'X';
    errbuf[0] = '\0';
    return eddy_envelope_parse(&env, line, n, errbuf, sizeof errbuf);
}

/* Parse the first @p n bytes of @p s, the rest of it still in the buffer after them. */
static int parse_prefix(const char *s, size_t n)
{
    size_t all = strlen(s);
    memcpy(line, s, all + 1);
    errbuf[0] = '\0';
    return eddy_envelope_parse(&env, line, n, errbuf, sizeof errbuf);
}

static int parse(const char *s)
{
    return parse_n(s, strlen(s));
}

static int eq(const char *p, ssize_t len, const char *want)
{
    return p && len >= 0 && (size_t)len == strlen(want) && memcmp(p, want, (size_t)len) == 0;
}

static int eqn(const char *p, ssize_t len, const char *want, size_t wlen)
{
    return p && len >= 0 && (size_t)len == wlen && memcmp(p, want, wlen) == 0;
}

/* A line that must fail with a message containing @p phrase. */
static void bad(const char *text, const char *phrase)
{
    char name[512];
    int rc = parse(text);
    int ok = rc == EDDY_EPARSE && strstr(errbuf, phrase) != NULL;
    snprintf(name, sizeof name, "rejects %.80s: \"%s\" (got rc %d, \"%s\")", text, phrase, rc, errbuf);
    test_cond(name, ok);
}

static void test_full_kcat_line(void)
{
    const char *l = "{\"topic\":\"clicks\",\"partition\":3,\"offset\":17,\"tstype\":\"create\","
                    "\"ts\":1700000000123,\"broker\":1,\"headers\":[\"h1\",\"v1\",\"h2\",null],"
                    "\"key\":\"u1\",\"payload\":\"{\\\"page\\\":\\\"/\\\"}\"}";
    int rc = parse(l);
    test_cond("kcat -J line with tstype and broker parses", rc == 0);
    test_cond("  topic", eq(env.topic, (ssize_t)env.topic_len, "clicks"));
    test_cond("  partition", env.partition == 3);
    test_cond("  offset", env.offset == 17);
    test_cond("  ts and has_ts", env.ts == 1700000000123LL && env.has_ts == 1);
    test_cond("  key", eq(env.key, env.key_len, "u1"));
    test_cond("  payload unescaped", eq(env.payload, env.payload_len, "{\"page\":\"/\"}"));
    test_cond("  two headers", env.nheaders == 2);
    test_cond("  header 1 name and value", env.nheaders == 2 &&
              eqn(env.headers[0].name, (ssize_t)env.headers[0].name_len, "h1", 2) &&
              eq(env.headers[0].value, env.headers[0].value_len, "v1"));
    test_cond("  header 2 null value has length -1", env.nheaders == 2 &&
              eqn(env.headers[1].name, (ssize_t)env.headers[1].name_len, "h2", 2) &&
              env.headers[1].value_len == -1);
}

static void test_minimal_and_defaults(void)
{
    int rc = parse("{\"payload\":\"x\"}");
    test_cond("only payload: parses", rc == 0);
    test_cond("  topic absent: NULL", env.topic == NULL);
    test_cond("  partition absent: -1", env.partition == -1);
    test_cond("  offset absent: -1", env.offset == -1);
    test_cond("  ts absent: has_ts 0", env.has_ts == 0);
    test_cond("  key absent: length -1", env.key_len == -1);
    test_cond("  payload", eq(env.payload, env.payload_len, "x"));
    test_cond("  no headers", env.nheaders == 0);

    rc = parse("{\"payload\":null,\"key\":null}");
    test_cond("payload null and key null: parses", rc == 0);
    test_cond("  payload null: length -1", env.payload_len == -1);
    test_cond("  key null: length -1", env.key_len == -1);

    rc = parse("{\"payload\":\"\",\"key\":\"\"}");
    test_cond("empty key and payload are not null", rc == 0 && env.key_len == 0 &&
              env.payload_len == 0 && env.key != NULL && env.payload != NULL);

    rc = parse("{\"payload\":\"x\",\"topic\":\"\"}");
    test_cond("topic \"\" means absent (NULL)", rc == 0 && env.topic == NULL);
    rc = parse("{\"payload\":\"x\",\"topic\":null}");
    test_cond("topic null means absent (NULL)", rc == 0 && env.topic == NULL);

    rc = parse("{\"payload\":\"x\",\"partition\":null,\"offset\":null,\"ts\":null,\"headers\":null}");
    test_cond("null partition, offset, ts, headers mean absent", rc == 0 && env.partition == -1 &&
              env.offset == -1 && env.has_ts == 0 && env.nheaders == 0);

    rc = parse("  {  \"payload\" :\t\"x\" ,\r\n \"key\" : \"k\"  }  \r");
    test_cond("whitespace around tokens (and a trailing \\r) is fine", rc == 0 &&
              eq(env.payload, env.payload_len, "x") && eq(env.key, env.key_len, "k"));

    rc = parse("{\"key\":\"k\",\"payload\":\"p\",\"topic\":\"t\"}");
    test_cond("fields in any order", rc == 0 && eq(env.key, env.key_len, "k") &&
              eq(env.payload, env.payload_len, "p") && eq(env.topic, (ssize_t)env.topic_len, "t"));

    /* the envelope is reset between parses */
    parse("{\"topic\":\"t\",\"partition\":1,\"offset\":2,\"ts\":3,\"key\":\"k\",\"payload\":\"p\","
          "\"headers\":[\"a\",\"b\"]}");
    rc = parse("{\"payload\":\"q\"}");
    test_cond("a second parse resets every field of the first", rc == 0 && env.topic == NULL &&
              env.partition == -1 && env.offset == -1 && env.has_ts == 0 && env.key_len == -1 &&
              env.nheaders == 0 && eq(env.payload, env.payload_len, "q"));
}

static void test_numbers(void)
{
    int rc = parse("{\"payload\":\"x\",\"ts\":1.7e12}");
    test_cond("ts 1.7e12 reads as 1700000000000", rc == 0 && env.has_ts && env.ts == 1700000000000LL);
    rc = parse("{\"payload\":\"x\",\"ts\":-5}");
    test_cond("negative ts", rc == 0 && env.ts == -5 && env.has_ts);
    rc = parse("{\"payload\":\"x\",\"ts\":0}");
    test_cond("ts 0 is present (has_ts 1)", rc == 0 && env.ts == 0 && env.has_ts == 1);
    rc = parse("{\"payload\":\"x\",\"offset\":9223372036854775807}");
    test_cond("offset INT64_MAX", rc == 0 && env.offset == INT64_MAX);
    rc = parse("{\"payload\":\"x\",\"partition\":2147483647}");
    test_cond("partition INT32_MAX", rc == 0 && env.partition == INT32_MAX);
    rc = parse("{\"payload\":\"x\",\"partition\":0}");
    test_cond("partition 0", rc == 0 && env.partition == 0);
}

static void test_strings(void)
{
    int rc = parse("{\"payload\":\"q\\\"b\\\\s\\/f\\bb\\ff\\nn\\rr\\tt\"}");
    test_cond("the simple escapes \\\" \\\\ \\/ \\b \\f \\n \\r \\t",
              rc == 0 && eq(env.payload, env.payload_len, "q\"b\\s/f\bb\ff\nn\rr\tt"));

    rc = parse("{\"key\":\"a\\u0000b\",\"payload\":\"x\"}");
    test_cond("\\u0000 is a NUL byte inside the key (length 3)",
              rc == 0 && eqn(env.key, env.key_len, "a\0b", 3));

    rc = parse("{\"payload\":\"\\u0001\\u001f\\u007f\\u0041\"}");
    test_cond("\\u0001 \\u001f \\u007f \\u0041 are single bytes",
              rc == 0 && eqn(env.payload, env.payload_len, "\x01\x1f\x7f" "A", 4));

    rc = parse("{\"payload\":\"\\u00ff\\u0080\\u00E9\"}");
    test_cond("\\u0080..\\u00ff stand for single bytes (binary keys round-trip), hex in any case",
              rc == 0 && eqn(env.payload, env.payload_len, "\xff\x80\xe9", 3));

    rc = parse("{\"payload\":\"\\u0100\\u07ff\"}");
    test_cond("\\u0100 and \\u07ff are 2-byte UTF-8",
              rc == 0 && eqn(env.payload, env.payload_len, "\xc4\x80\xdf\xbf", 4));

    rc = parse("{\"payload\":\"\\u20ac\"}");
    test_cond("\\u20ac is the 3-byte UTF-8 of the euro sign",
              rc == 0 && eqn(env.payload, env.payload_len, "\xe2\x82\xac", 3));

    rc = parse("{\"payload\":\"\\ud83d\\ude00\"}");
    test_cond("a surrogate pair \\ud83d\\ude00 is the 4-byte UTF-8 of U+1F600",
              rc == 0 && eqn(env.payload, env.payload_len, "\xf0\x9f\x98\x80", 4));

    rc = parse("{\"payload\":\"caf\xc3\xa9 \xe2\x82\xac\"}");
    test_cond("raw UTF-8 bytes pass through unchanged",
              rc == 0 && eq(env.payload, env.payload_len, "caf\xc3\xa9 \xe2\x82\xac"));

    rc = parse("{\"payload\":\"\xff\xfe\x80\"}");
    test_cond("raw bytes that are not UTF-8 pass through unchanged",
              rc == 0 && eqn(env.payload, env.payload_len, "\xff\xfe\x80", 3));

    rc = parse("{\"pay\\u006coad\":\"x\"}");
    test_cond("escapes in a field name are decoded (pay\\u006coad is payload)",
              rc == 0 && eq(env.payload, env.payload_len, "x"));

    /* a long string with an escape far from its start */
    {
        char big[5000];
        size_t n = 0;
        n += (size_t)sprintf(big + n, "{\"payload\":\"");
        for (int i = 0; i < 4000; i++) big[n++] = 'a' + i % 26;
        n += (size_t)sprintf(big + n, "\\n\"}");
        rc = parse_n(big, n);
        test_cond("a 4000-byte string ending in an escape", rc == 0 && env.payload_len == 4001 &&
                  env.payload[0] == 'a' && env.payload[3999] == 'a' + 3999 % 26 &&
                  env.payload[4000] == '\n');
    }
}

static void test_headers(void)
{
    int rc = parse("{\"payload\":\"x\",\"headers\":[]}");
    test_cond("headers [] is no headers", rc == 0 && env.nheaders == 0);

    rc = parse("{\"payload\":\"x\",\"headers\":[\"a\",\"1\",\"a\",\"2\",\"e\",\"\"]}");
    test_cond("duplicate header names are kept in order; an empty value is not null",
              rc == 0 && env.nheaders == 3 &&
              eq(env.headers[0].value, env.headers[0].value_len, "1") &&
              eq(env.headers[1].value, env.headers[1].value_len, "2") &&
              env.headers[2].value_len == 0);

    rc = parse("{\"payload\":\"x\",\"headers\":[\"b\\u0000in\",\"v\\u0000\\n\"]}");
    test_cond("header names and values are unescaped (NUL bytes kept)",
              rc == 0 && env.nheaders == 1 &&
              eqn(env.headers[0].name, (ssize_t)env.headers[0].name_len, "b\0in", 4) &&
              eqn(env.headers[0].value, env.headers[0].value_len, "v\0\n", 3));

    /* many headers: the array grows */
    {
        char big[8192];
        size_t n = (size_t)sprintf(big, "{\"payload\":\"x\",\"headers\":[");
        for (int i = 0; i < 100; i++) {
            n += (size_t)sprintf(big + n, "%s\"h%d\",\"v%d\"", i ? "," : "", i, i);
        }
        n += (size_t)sprintf(big + n, "]}");
        rc = parse_n(big, n);
        int ok = rc == 0 && env.nheaders == 100;
        for (int i = 0; ok && i < 100; i++) {
            char hn[16], hv[16];
            snprintf(hn, sizeof hn, "h%d", i);
            snprintf(hv, sizeof hv, "v%d", i);
            ok = eqn(env.headers[i].name, (ssize_t)env.headers[i].name_len, hn, strlen(hn)) &&
                 eq(env.headers[i].value, env.headers[i].value_len, hv);
        }
        test_cond("100 headers, in order", ok);
        rc = parse("{\"payload\":\"x\",\"headers\":[\"only\",\"one\"]}");
        test_cond("a later line with one header after 100 has exactly one", rc == 0 &&
                  env.nheaders == 1 && eq(env.headers[0].value, env.headers[0].value_len, "one"));
    }
}

static void test_unknown_fields(void)
{
    int rc = parse("{\"x\":{\"a\":[1,2,{\"b\":null}],\"c\":true,\"d\":false},\"y\":[],\"w\":{},"
                   "\"z\":-1.5e3,\"s\":\"str\\\"ing\",\"payload\":\"p\",\"n\":null}");
    test_cond("unknown fields of every JSON type are skipped",
              rc == 0 && eq(env.payload, env.payload_len, "p"));

    char deep[400];
    size_t n = (size_t)sprintf(deep, "{\"x\":");
    for (int i = 0; i < 50; i++) deep[n++] = '[';
    for (int i = 0; i < 50; i++) deep[n++] = ']';
    n += (size_t)sprintf(deep + n, ",\"payload\":\"p\"}");
    rc = parse_n(deep, n);
    test_cond("an unknown field nested 50 deep is skipped", rc == 0);

    n = (size_t)sprintf(deep, "{\"payload\":\"p\",\"x\":");
    for (int i = 0; i < 100; i++) deep[n++] = '[';
    for (int i = 0; i < 100; i++) deep[n++] = ']';
    deep[n++] = '}';
    rc = parse_n(deep, n);
    test_cond("nesting 100 deep is refused (\"nested too deep\")",
              rc == EDDY_EPARSE && strstr(errbuf, "nested too deep"));
}

static void test_errors(void)
{
    bad("", "not a JSON object");
    bad("   ", "not a JSON object");
    bad("[\"payload\",\"x\"]", "not a JSON object");
    bad("not json", "not a JSON object");
    bad("\"payload\"", "not a JSON object");
    bad("{", "expected a field name");
    bad("{payload:\"x\"}", "expected a field name");
    bad("{\"payload\":\"x\",}", "expected a field name");
    bad("{\"payload\" \"x\"}", "expected ':' after \"payload\"");
    bad("{\"payload\"", "expected ':' after \"payload\"");
    bad("{\"payload\":\"x\"", "expected ',' or '}'");
    bad("{\"payload\":\"x\" \"key\":\"k\"}", "expected ',' or '}'");
    bad("{\"payload\":\"x\"} x", "trailing characters");
    bad("{\"payload\":\"x\"}{\"payload\":\"y\"}", "trailing characters");
    bad("{}", "missing field \"payload\"");
    bad("{\"key\":\"k\",\"ts\":1}", "missing field \"payload\"");

    /* strings */
    bad("{\"payload\":\"x", "unterminated string");
    bad("{\"payload\":\"x\\\"}", "unterminated string");
    bad("{\"pay", "unterminated string");
    bad("{\"payload\":\"\\x\"}", "bad escape \\x");
    bad("{\"payload\":\"\\u12", "truncated \\u escape");
    bad("{\"payload\":\"\\uzzzz\"}", "bad \\u escape");
    bad("{\"payload\":\"\\u12\"}", "bad \\u escape");

    /* typed fields */
    bad("{\"payload\":5}", "field \"payload\" must be a string or null");
    bad("{\"payload\":[\"x\"]}", "field \"payload\" must be a string or null");
    bad("{\"payload\":\"x\",\"key\":5}", "field \"key\" must be a string or null");
    bad("{\"payload\":\"x\",\"key\":{}}", "field \"key\" must be a string or null");
    bad("{\"payload\":\"x\",\"topic\":7}", "field \"topic\" must be a string or null");
    bad("{\"payload\":nul}", "unexpected character 'n'");
    bad("{\"payload\":\"x\",\"ts\":\"now\"}", "expected a number");
    bad("{\"payload\":\"x\",\"partition\":\"3\"}", "expected a number");
    bad("{\"payload\":\"x\",\"offset\":true}", "expected a number");
    bad("{\"payload\":\"x\",\"ts\":99999999999999999999}", "number out of range");
    bad("{\"payload\":\"x\",\"offset\":-99999999999999999999}", "number out of range");
    bad("{\"payload\":\"x\",\"partition\":-1}", "partition -1 out of range");
    bad("{\"payload\":\"x\",\"partition\":2147483648}", "partition 2147483648 out of range");
    bad("{\"payload\":\"x\",\"ts\":nil}", "unexpected character 'n'");

    /* headers */
    bad("{\"payload\":\"x\",\"headers\":{}}", "field \"headers\" must be an array");
    bad("{\"payload\":\"x\",\"headers\":\"h\"}", "field \"headers\" must be an array");
    bad("{\"payload\":\"x\",\"headers\":[null,\"v\"]}", "a header name must be a string");
    bad("{\"payload\":\"x\",\"headers\":[\"a\"]}", "headers must come in name, value pairs");
    bad("{\"payload\":\"x\",\"headers\":[\"a\",\"1\",\"b\"]}", "headers must come in name, value pairs");
    bad("{\"payload\":\"x\",\"headers\":[\"a\",\"b\" \"c\",\"d\"]}", "expected ',' or ']' in headers");
    bad("{\"payload\":\"x\",\"headers\":[\"a\",\"b\"", "expected ',' or ']' in headers");
    bad("{\"payload\":\"x\",\"headers\":[\"a\",5]}", "field \"headers\" must be a string or null");
    bad("{\"payload\":\"x\",\"headers\":[5,\"a\"]}", "field \"headers\" must be a string or null");
    bad("{\"payload\":\"x\",\"headers\":[\"a\",\"b\",]}", "field \"headers\" must be a string or null");
    bad("{\"payload\":\"x\",\"headers\":nope}", "unexpected character 'n'");

    /* unknown fields: the generic skipper */
    bad("{\"payload\":\"x\",\"extra\":tru}", "unexpected character 't'");
    bad("{\"payload\":\"x\",\"extra\":fals}", "unexpected character 'f'");
    bad("{\"payload\":\"x\",\"extra\":", "unexpected end of line");
    bad("{\"payload\":\"x\",\"extra\":{\"a\" 1}}", "expected ':'");
    bad("{\"payload\":\"x\",\"extra\":{1:2}}", "expected a field name");
    bad("{\"payload\":\"x\",\"extra\":[1 2]}", "expected ',' or ']'");
    bad("{\"payload\":\"x\",\"extra\":{\"a\":1 \"b\":2}}", "expected ',' or '}'");
    bad("{\"payload\":\"x\",\"extra\":-}", "bad number");
    bad("{\"payload\":\"x\",\"extra\":@}", "unexpected character '@'");
    bad("{\"payload\":\"x\",\"extra\":\"\\q\"}", "bad escape \\q");
    bad("{\"payload\":\"x\",\"extra\":[\"unterminated]}", "unterminated string");

    /* a small errstr is truncated, not overflowed */
    {
        char small[8];
        char l[] = "not json";
        memset(small, 'Z', sizeof small);
        int rc = eddy_envelope_parse(&env, l, strlen(l), small, sizeof small);
        test_cond("a short errstr is NUL-terminated within its size",
                  rc == EDDY_EPARSE && memchr(small, '\0', sizeof small) != NULL);
    }
}

static void test_bounds(void)
{
    /* the parser reads exactly len bytes, never the bytes after them */
    const char *text = "{\"payload\":\"x\"}GARBAGE";
    int rc = parse_prefix(text, 15);
    test_cond("bytes after len are not read (garbage after the object)", rc == 0 &&
              eq(env.payload, env.payload_len, "x"));
    rc = parse_prefix("{\"payload\":\"xyz\"}", 13);
    test_cond("a line cut inside a string is unterminated", rc == EDDY_EPARSE &&
              strstr(errbuf, "unterminated string"));
    rc = parse_prefix("{\"payload\":\"x\",\"ts\":12345}", 22);
    test_cond("a line cut inside a number fails (does not read on)", rc == EDDY_EPARSE);
    rc = parse_prefix("{\"payload\":\"x\",\"key\":\"k\"}", 21);
    test_cond("a line cut right after a field name fails", rc == EDDY_EPARSE);
    rc = parse_n("{\"payload\":\"x\"}\0{}", 18);
    test_cond("a NUL byte after the object is trailing garbage", rc == EDDY_EPARSE &&
              strstr(errbuf, "trailing characters"));
    rc = parse_n("{\"payload\":\"a\0b\"}", 17);
    test_cond("a raw NUL byte inside a string is kept", rc == 0 &&
              eqn(env.payload, env.payload_len, "a\0b", 3));
}

/* Found by fuzz/fuzz_envelope.c (inputs in fuzz/corpus/envelope/regress-*). */
static void test_fuzz_regressions(void)
{
    /* a number at the very end of the bytes: strtoll/strtod read a bounded copy,
     * not the bytes after len (caught by ASan in `make asan-test`: no byte after) */
    const char *cut[] = {"{\"payload\":\"x\",\"ts\":1", "{\"payload\":\"x\",\"ts\":1.5e",
                         "{\"payload\":\"x\",\"extra\":-2"};
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        size_t n = strlen(cut[i]);
        char *exact = malloc(n);
        memcpy(exact, cut[i], n);
        int rc = eddy_envelope_parse(&env, exact, n, errbuf, sizeof errbuf);
        test_cond("a number ending the bytes is read within them", rc == EDDY_EPARSE);
        free(exact);
    }
    /* a timestamp beyond int64 in exponent form: refused, not cast (undefined) */
    bad("{\"payload\":\"\",\"ts\": 1.7e19}", "number out of range");
    bad("{\"payload\":\"\",\"offset\":-1e300}", "number out of range");
    bad("{\"payload\":\"\",\"ts\":1e999}", "number out of range");
    test_cond("a timestamp in exponent form within range is kept",
              parse("{\"payload\":\"\",\"ts\":1.7e12}") == 0 && env.ts == 1700000000000LL);
}

static void test_write(void)
{
    eddy_buf b = EDDY_BUF_INIT;
    eddy_envelope_write(&b, "out", 3, 2, 17, 1700000000123LL, "k1", 2, "v1", 2, NULL, 0);
    const char *want =
        "{\"topic\":\"out\",\"partition\":2,\"offset\":17,\"tstype\":\"create\",\"ts\":1700000000123,"
        "\"key\":\"k1\",\"payload\":\"v1\"}\n";
    test_cond("write: kcat -J field order, no headers field without headers, one newline",
              b.len == strlen(want) && memcmp(b.data, want, b.len) == 0);

    eddy_buf_reset(&b);
    eddy_header hs[] = {{"h1", 2, "v1", 2}, {"n", 1, NULL, -1}, {"e", 1, "", 0}};
    eddy_envelope_write(&b, "t", 1, 0, 0, 5, NULL, -1, NULL, -1, hs, 3);
    want = "{\"topic\":\"t\",\"partition\":0,\"offset\":0,\"tstype\":\"create\",\"ts\":5,"
           "\"headers\":[\"h1\",\"v1\",\"n\",null,\"e\",\"\"],\"key\":null,\"payload\":null}\n";
    test_cond("write: headers (null value as null), null key and null payload",
              b.len == strlen(want) && memcmp(b.data, want, b.len) == 0);

    eddy_buf_reset(&b);
    eddy_envelope_write(&b, "t", 1, 0, -1, -1700000000000LL, "", 0, "", 0, NULL, 0);
    want = "{\"topic\":\"t\",\"partition\":0,\"offset\":-1,\"tstype\":\"create\",\"ts\":-1700000000000,"
           "\"key\":\"\",\"payload\":\"\"}\n";
    test_cond("write: negative numbers, empty (not null) key and payload",
              b.len == strlen(want) && memcmp(b.data, want, b.len) == 0);

    eddy_buf_reset(&b);
    eddy_envelope_write(&b, "t", 1, 2147483647, INT64_MAX, INT64_MIN, "k", 1, "v", 1, NULL, 0);
    want = "{\"topic\":\"t\",\"partition\":2147483647,\"offset\":9223372036854775807,\"tstype\":"
           "\"create\",\"ts\":-9223372036854775808,\"key\":\"k\",\"payload\":\"v\"}\n";
    test_cond("write: INT32_MAX partition, INT64_MAX offset, INT64_MIN ts",
              b.len == strlen(want) && memcmp(b.data, want, b.len) == 0);

    /* escaping: the line is one line of JSON, whatever the bytes */
    eddy_buf_reset(&b);
    eddy_envelope_write(&b, "t", 1, 0, 0, 0, "q\"b\\s", 5, "a\nb\rc\td\x01\x1f\x7f", 11, NULL, 0);
    int raw_ctl = 0;
    for (size_t i = 0; i + 1 < b.len; i++) {
        if ((unsigned char)b.data[i] < 0x20) raw_ctl = 1;
    }
    test_cond("write: no raw control byte before the final newline", !raw_ctl &&
              b.data[b.len - 1] == '\n');
    test_cond("write: quote and backslash escaped",
              memmem(b.data, b.len, "\"key\":\"q\\\"b\\\\s\"", strlen("\"key\":\"q\\\"b\\\\s\"")) != NULL);
    test_cond("write: \\n \\r \\t written as the short escapes",
              memmem(b.data, b.len, "a\\nb\\rc\\td", strlen("a\\nb\\rc\\td")) != NULL);
    eddy_buf_free(&b);
}

/* Every byte value through write then parse, in key, payload and a header. */
static void test_roundtrip(void)
{
    unsigned char all[256];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
    eddy_buf b = EDDY_BUF_INIT;
    eddy_header hs[] = {{(const char *)all, 256, (const char *)all, 256}, {"nul", 3, NULL, -1}};
    eddy_envelope_write(&b, "topic.with-dots_", 16, 5, 42, 1700000000000LL, (const char *)all, 256,
                        (const char *)all, 256, hs, 2);
    int newline_only_at_end = memchr(b.data, '\n', b.len - 1) == NULL;
    test_cond("round trip: the written line has one newline, at the end", newline_only_at_end);
    int rc = parse_n(b.data, b.len - 1);
    test_cond("round trip: the written line parses", rc == 0);
    test_cond("round trip: topic", eq(env.topic, (ssize_t)env.topic_len, "topic.with-dots_"));
    test_cond("round trip: partition, offset, ts", env.partition == 5 && env.offset == 42 &&
              env.ts == 1700000000000LL && env.has_ts);
    test_cond("round trip: all 256 byte values in the key",
              eqn(env.key, env.key_len, (const char *)all, 256));
    test_cond("round trip: all 256 byte values in the payload",
              eqn(env.payload, env.payload_len, (const char *)all, 256));
    test_cond("round trip: header name and value with all 256 byte values", env.nheaders == 2 &&
              eqn(env.headers[0].name, (ssize_t)env.headers[0].name_len, (const char *)all, 256) &&
              eqn(env.headers[0].value, env.headers[0].value_len, (const char *)all, 256));
    test_cond("round trip: null header value", env.nheaders == 2 && env.headers[1].value_len == -1);

    /* writing the parsed record again gives the same line (a fixed point) */
    eddy_buf b2 = EDDY_BUF_INIT;
    eddy_header h2[2];
    for (int i = 0; i < 2; i++) h2[i] = env.headers[i];
    eddy_envelope_write(&b2, env.topic, env.topic_len, env.partition, env.offset, env.ts, env.key,
                        env.key_len, env.payload, env.payload_len, h2, 2);
    /* b was parsed in place in `line`, not in b: compare with a fresh write of the input */
    eddy_buf_reset(&b);
    eddy_envelope_write(&b, "topic.with-dots_", 16, 5, 42, 1700000000000LL, (const char *)all, 256,
                        (const char *)all, 256, hs, 2);
    test_cond("round trip: write(parse(write(x))) == write(x)", b.len == b2.len &&
              memcmp(b.data, b2.data, b.len) == 0);
    eddy_buf_free(&b);
    eddy_buf_free(&b2);
}

static void test_free(void)
{
    eddy_envelope e;
    memset(&e, 0, sizeof e);
    eddy_envelope_free(&e);
    test_cond("free of a zeroed envelope is harmless", e.headers == NULL && e.nheaders == 0);
    parse("{\"payload\":\"x\",\"headers\":[\"a\",\"b\"]}");
    eddy_envelope_free(&env);
    test_cond("free releases the header array", env.headers == NULL && env.nheaders == 0 &&
              env.hcap == 0);
    int rc = parse("{\"payload\":\"x\",\"headers\":[\"a\",\"b\"]}");
    test_cond("the envelope is usable again after free", rc == 0 && env.nheaders == 1);
    eddy_envelope_free(&env);
}

int main(void)
{
    test_full_kcat_line();
    test_minimal_and_defaults();
    test_numbers();
    test_strings();
    test_headers();
    test_unknown_fields();
    test_errors();
    test_bounds();
    test_fuzz_regressions();
    test_write();
    test_roundtrip();
    test_free();
    test_report();
}
