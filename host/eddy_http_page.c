/*
 * eddy_http_page — the page of GET / (placeholder until the live page lands).
 */
#include "eddy_http.h"

const char eddy_http_page[] =
    "<!doctype html><title>eddy</title><p>eddy: see <a href=/status>/status</a> and "
    "<a href=/metrics>/metrics</a>.</p>\n";
