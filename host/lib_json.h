/*
 * lib_json.h — the "eddy.json" Lua module (encode, decode, null, array_mt),
 * preloaded into every job's Lua state. See lib_json.c for why it exists.
 */
#ifndef EDDY_LIB_JSON_H
#define EDDY_LIB_JSON_H

#include <lua.h>

/** @brief [-0, +1] Push the eddy.json module table. */
int eddy_open_json(lua_State *L);

#endif
