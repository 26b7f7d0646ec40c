-- spec/tools/file_job.lua: a job (script text without its require line) run in file mode
-- over envelope records, the way the aggregation and join specs run theirs: `eddy run`
-- with --input/--output/--dlq files and a fresh state dir, `eddy check`, the run's
-- summary line, its outputs reduced to {key, value, ts}, and a case fed phase by phase
-- through eddy.testing's driver, then as one run.
local h = require "helper"
local assert = require "luassert"

local _M = {}

_M.PRE = 'local eddy = require "eddy"\n'

--- An envelope line for a record {topic=, key=, value=, ts=, partition=}; a string is
--- taken for a line already.
function _M.envelope(r)
    if type(r) == "string" then return r end
    return h.envelope({ topic = r.topic, key = r.key, payload = r.value, ts = r.ts, partition = r.partition })
end

--- The counts of the summary line `eddy run` writes to stderr: { inn, out, errors, dlq },
--- nil when there is none.
function _M.summary(stderr)
    local i, o, e, d = (stderr or ""):match("(%d+) record%(s%) in, (%d+) out, (%d+) error%(s%), (%d+) dead%-lettered")
    if not i then return nil end
    return { inn = tonumber(i), out = tonumber(o), errors = tonumber(e), dlq = tonumber(d) }
end

--- Run a job over records (tables as for envelope(), or lines) in file mode; args: more
--- arguments of `eddy run`.
--- opts.script_name: the script's file name (default job.lua);
--- opts.state: a state directory to use (and keep); default a fresh one, removed;
--- opts.keep_state: keep the temporary directory and return it (res.dir, res.script), for
---   `eddy stores` (the caller removes it);
--- opts.quiet: run with --quiet.
--- Returns { code, stderr, out (envelopes), dlq (envelopes), summary }.
function _M.run(script, records, args, opts)
    opts = opts or {}
    local dir = h.tmpdir()
    local sp = h.script(dir, opts.script_name or "job.lua", _M.PRE .. script)
    local lines = {}
    for i, r in ipairs(records) do lines[i] = _M.envelope(r) end
    local input = h.write(dir .. "/in.jsonl", table.concat(lines, "\n") .. "\n")
    local argv = { "run", sp, "--input", input, "--output", dir .. "/out.jsonl",
        "--dlq", dir .. "/dlq.jsonl", "--state-dir", opts.state or (dir .. "/state"), "--no-watch" }
    if opts.quiet then argv[#argv + 1] = "--quiet" end
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    local code, _, stderr = h.eddy(argv)
    local res = { code = code, stderr = stderr or "",
        out = h.envelopes(h.read(dir .. "/out.jsonl") or ""),
        dlq = h.envelopes(h.read(dir .. "/dlq.jsonl") or "") }
    res.summary = _M.summary(res.stderr)
    if opts.keep_state then
        res.dir, res.script = dir, sp
    else
        os.execute("rm -rf " .. h.q(dir))
    end
    return res
end

--- `eddy check` on a job; returns exit code, stdout, stderr.
function _M.check(script)
    local dir = h.tmpdir()
    local sp = h.script(dir, "job.lua", _M.PRE .. script)
    local code, out, err = h.eddy({ "check", sp })
    os.execute("rm -rf " .. h.q(dir))
    return code, out or "", err or ""
end

--- The run went through: exit 0, nothing dead-lettered.
function _M.assert_clean(r)
    assert.are.equal(0, r.code, "exit status; stderr:\n" .. r.stderr)
    assert.are.equal(0, #r.dlq, "dead-lettered: " .. (r.dlq[1] and tostring(h.header(r.dlq[1], "eddy.error")) or ""))
end

--- {key, value, ts} of output records (envelopes carry `payload`, the driver's records `value`).
function _M.strip(list)
    local out = {}
    for i, r in ipairs(list) do
        local v = r.value
        if v == nil then v = r.payload end
        out[i] = { key = r.key, value = v, ts = r.ts }
    end
    return out
end

--- A case phase by phase, then whole. steps: input records {topic, key, value, ts,
--- partition} and checks { expect = {{key, value, ts}, ...}, what = message }, in order.
--- First through eddy.testing's driver (each check reads `output` with one `eddy run` on
--- the same state, and must get its list); then all the input as one file-mode run
--- (run_opts as run()'s opts), which must give every check's list in order (`whole`: the
--- message).
function _M.phases(script, output, steps, whole, run_opts)
    local d = require("eddy.testing").driver(_M.PRE .. script)
    local all_in, all_out = {}, {}
    local ok, err = pcall(function()
        for _, s in ipairs(steps) do
            if s.expect then
                assert.are.same(s.expect, _M.strip(d:read_all(output)), s.what)
                for _, e in ipairs(s.expect) do all_out[#all_out + 1] = e end
            else
                d:pipe(s.topic, { { key = s.key, value = s.value, ts = s.ts, partition = s.partition } })
                all_in[#all_in + 1] = s
            end
        end
        assert.are.same({}, d:dlq())
    end)
    d:close()
    if not ok then error(err, 0) end
    local r = _M.run(script, all_in, nil, run_opts)
    _M.assert_clean(r)
    assert.are.same(all_out, _M.strip(r.out), whole)
end

return _M
