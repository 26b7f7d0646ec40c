-- eddy.bytes: the small pieces of eddy's own store keys, shared by the window
-- and join stores: 4-byte big-endian numbers, and collecting an iterator.
local _M = {}

local floor, char, byte = math.floor, string.char, string.byte

--- n (0 <= n < 2^32) as 4 bytes, big-endian (key order = numeric order).
function _M.be4(n)
    return char(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256)
end

--- The number in s's 4 bytes at i.
function _M.unbe4(s, i)
    local a, b, c, d = byte(s, i, i + 3)
    return ((a * 256 + b) * 256 + c) * 256 + d
end

--- Collect all entries of an iterator (store iterators must be run to the end
--- before the store is written): keys, values, count.
function _M.collect(it)
    local ks, vs, n = {}, {}, 0
    for k, v in it do
        n = n + 1
        ks[n], vs[n] = k, v
    end
    return ks, vs, n
end

return _M
