/*
 * t_json.c — lib_json (the "json" serde's codec) from C, in a bare LuaJIT state:
 * numbers with more digits than an int64 holds, round trips, deep nesting.
 * Cases found by fuzz/fuzz_json.c are kept here (and in fuzz/corpus/json/regress-*).
 */
#include "lib_json.h"
#include "testhelp.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lua_State *L;

/* Run a chunk that returns a boolean (its argument: the eddy.json table). */
static int lua_true(const char *chunk)
{
    if (luaL_loadstring(L, chunk) != 0) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return 0;
    }
    lua_getglobal(L, "json");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return 0;
    }
    int ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return ok;
}

int main(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_pushcfunction(L, eddy_open_json);
    lua_call(L, 0, 1);
    lua_setglobal(L, "json");

    /* fuzz_json: a run of digits longer than an int64 overflowed the integer
     * accumulator (undefined behaviour; caught by `make asan-test`) */
    test_cond("a 30-digit integer decodes to the nearest double",
              lua_true("local j = ... local v = j.decode('123456789012345678901234567890') "
                       "return v == 1.2345678901234568e29"));
    test_cond("a 20-digit negative integer inside an array decodes",
              lua_true("local j = ... local v = j.decode('[-99999999999999999999]') "
                       "return v[1] == -1e20"));
    test_cond("15 digits are still exact",
              lua_true("local j = ... return j.decode('999999999999999') == 999999999999999"));
    test_cond("16 digits and more go through strtod, exactly to 2^53",
              lua_true("local j = ... return j.decode('9007199254740992') == 2^53 and "
                       "j.encode(j.decode('9007199254740992')) == '9007199254740992'"));

    /* the round trip fuzz_json checks, on a few values */
    test_cond("decode, encode, decode, encode gives the same bytes",
              lua_true("local j = ... for _, s in ipairs({'[1,2.5,-3e10,1e-7,0]', '{\"a\":[[],{}]}', "
                       "'\"\\\\u0000\\\\ud83d\\\\ude00\"', '[null,true,false]', '1e300'}) do "
                       "local e1 = j.encode(j.decode(s)) "
                       "if e1 ~= j.encode(j.decode(e1)) then return false end end return true"));
    test_cond("nesting deeper than 1000 is a clear error",
              lua_true("local j = ... local v, err = j.decode(('['):rep(1200) .. (']'):rep(1200)) "
                       "return v == nil and err:find('nested too deep', 1, true) ~= nil"));
    test_cond("nesting of 1000 decodes and encodes",
              lua_true("local j = ... local s = ('['):rep(1000) .. (']'):rep(1000) "
                       "return j.encode(j.decode(s)) == s"));
    lua_close(L);
    test_report();
}
