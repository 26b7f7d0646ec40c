/*
 * fuzz_json.c — libFuzzer harness of the "json" serde's C codec (lib_json.c,
 * eddy.json.decode / encode) in a LuaJIT state opened the way eddy_job.c
 * opens it (package.preload["eddy.json"] = eddy_open_json). Property: when
 * the input decodes, its encoding decodes again to a value whose encoding is
 * the same bytes (object keys are compared sorted: Lua tables have no order).
 * The first input byte, when it is 0x01, asks for deep nesting instead: the
 * rest of the input is repeated as '[' / '{"a":' prefixes.
 */
#include "lib_json.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lua_State *L;

/* Lua side of the check: decode, encode, decode, encode; canonical comparison. */
/* The JIT is off: LuaJIT 2.1.0-beta3 as Debian 12 builds it miscompiles canon()
 * below on deep nests (a recursion with pairs + table.sort gives a different
 * result once compiled; fuzz/luajit_jit_recursion_repro.lua), and results must
 * not depend on which inputs ran before. The codec under test is C either way. */
static const char check_lua[] =
    "jit.off()\n"
    "local json = require 'eddy.json'\n"
    "local function canon(v, out)\n"
    "  local t = type(v)\n"
    "  if t == 'table' then\n"
    "    if getmetatable(v) == json.array_mt then\n"
    "      out[#out + 1] = '['\n"
    "      for i = 1, #v do canon(v[i], out); out[#out + 1] = ',' end\n"
    "      out[#out + 1] = ']'\n"
    "    else\n"
    "      local keys = {}\n"
    "      for k in pairs(v) do keys[#keys + 1] = k end\n"
    "      table.sort(keys)\n"
    "      out[#out + 1] = '{'\n"
    "      for _, k in ipairs(keys) do\n"
    "        out[#out + 1] = json.encode(k); out[#out + 1] = ':'; canon(v[k], out); out[#out + 1] = ','\n"
    "      end\n"
    "      out[#out + 1] = '}'\n"
    "    end\n"
    "  else\n"
    "    local s, err = json.encode(v)\n"
    "    if not s then error('encode of a scalar failed: ' .. err) end\n"
    "    out[#out + 1] = s\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "return function(input)\n"
    "  local v, err = json.decode(input)\n"
    "  if v == nil then\n"
    "    assert(type(err) == 'string', 'decode failed without a message')\n"
    "    return 'rejected'\n"
    "  end\n"
    "  local e1, eerr = json.encode(v)\n"
    "  if not e1 then\n"
    "    return 'encode: ' .. eerr\n"       /* too deep to encode: a clear error */
    "  end\n"
    "  local v2, err2 = json.decode(e1)\n"
    "  if v2 == nil then error('the encoding does not decode: ' .. err2 .. ': ' .. e1) end\n"
    "  local e2 = assert(json.encode(v2))\n"
    "  if #e1 ~= #e2 then error('round trip changed the length: ' .. e1 .. ' vs ' .. e2) end\n"
    "  local c1, c2 = table.concat(canon(v, {})), table.concat(canon(v2, {}))\n"
    "  if c1 ~= c2 then error('round trip changed the value: ' .. c1 .. ' vs ' .. c2) end\n"
    "  return 'ok'\n"
    "end\n";

static int check_ref = LUA_NOREF;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, eddy_open_json);
    lua_setfield(L, -2, "eddy.json");
    lua_pop(L, 2);
    if (luaL_loadbuffer(L, check_lua, sizeof check_lua - 1, "=fuzz_json") != 0 ||
        lua_pcall(L, 0, 1, 0) != 0) {
        fprintf(stderr, "fuzz_json: %s\n", lua_tostring(L, -1));
        abort();
    }
    check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static void run(const char *s, size_t n)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
    lua_pushlstring(L, s, n);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "fuzz_json: %s\n", msg ? msg : "?");
        abort();
    }
    lua_settop(L, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] == 0x01) {
        /* deep nesting: data[1] picks the depth (x 16), the rest is the innermost value */
        size_t depth = size > 1 ? (size_t)data[1] * 16 : 1000;
        size_t in = size > 2 ? size - 2 : 0;
        char *buf = malloc(depth * 6 + in + depth + 1);
        size_t n = 0;
        for (size_t i = 0; i < depth; i++) {
            if (i % 3 == 2) {
                memcpy(buf + n, "{\"a\":", 5);
                n += 5;
            } else {
                buf[n++] = '[';
            }
        }
        memcpy(buf + n, data + 2, in);
        n += in;
        for (size_t i = depth; i-- > 0;) {
            buf[n++] = i % 3 == 2 ? '}' : ']';
        }
        run(buf, n);
        free(buf);
    } else {
        run((const char *)data, size);
    }
    if (lua_gc(L, LUA_GCCOUNT, 0) > 64 * 1024) {      /* KB: keep the heap small */
        lua_gc(L, LUA_GCCOLLECT, 0);
    }
    return 0;
}
