-- swtpm/state.lua: what the first pass over a capture file learns, per frame.
--
-- One record of the log is one TCP segment; per TCP conversation (both endpoints, either
-- direction) a response answers the last request before it: swtpm serves one command at a
-- time on a connection. A second response to the same request (the control channel's
-- "Ctrl Rsp Continued", the rest of a state blob) is a continuation.
--
-- Per frame the state is a few numbers in flat tables indexed by frame number (a capture of
-- 200k frames costs a few MB, not a Lua table per frame). Everything is rebuilt from scratch
-- whenever Wireshark dissects the file afresh: reset() is the "swtpm" protocol's init
-- routine, so a second file, a changed preference or Analyze > Reload Lua Plugins starts
-- clean. The first time a frame is seen its record is written; later passes (redraws,
-- tshark -2, the GUI's details pane) only read it.
local token = ...
if token ~= "swtpm-extcap" then return end  -- loaded by Wireshark on its own: swtpm.lua loads it

local M = {}

-- kind bits
M.RESPONSE = 1
M.TPM12 = 2
M.CONTINUED = 4
M.CTRL = 8
M.NO_REQUEST = 16

-- seconds since the first frame (pinfo.rel_ts): differences of these are exact to the
-- nanosecond, unlike differences of absolute times around 1.8e9
local kind, peer, code, time, last
function M.reset()
    kind, peer, code, time, last = {}, {}, {}, {}, {}
    M.kind = kind      -- frame -> kind bits (a frame that carries a TPM or control message)
    M.peer = peer      -- frame -> the paired frame (request <-> response)
    M.code = code      -- frame -> command code (TPM 2.0 CC, TPM 1.2 ordinal, control command)
    M.time = time      -- frame -> pinfo.rel_ts
    M.rc = {}          -- response frame -> response code (TPM) or result (control channel)
    M.sessions = {}    -- request frame -> number of sessions of a TPM 2.0 command
    M.explain = {}     -- frame -> number of "policy: explain:" notes
    M.last = last      -- conversation -> the last request's frame
end
M.reset()

-- The conversation of a message, the same number for both directions: the channel (0 TPM,
-- 1 control), the client's port and the server's. (Not the addresses: reading an address
-- costs more than the rest of the pairing, and a capture's TPM connections are told apart
-- by their client ports; two clients on one port pair at once would share a conversation.)
function M.key(channel, cport, sport)
    return (channel * 65536 + cport) * 65536 + sport
end

-- First sight of a message: pair it. Returns the kind bits.
-- code: the request's command code (nil for a response or an unreadable request)
-- tpm2_tag: a response with a TPM 2.0 tag (0x8001, 0x8002) is TPM 2.0 whatever its request
-- (a TPM 2.0 answers a TPM 1.2 probe so: QEMU and firmware ask TPM_ORD_GetTicks first)
function M.note(num, key, is_request, code_, bits, rel_ts, tpm2_tag)
    time[num] = rel_ts
    if is_request then
        kind[num] = bits
        code[num] = code_
        last[key] = num
        return bits
    end
    bits = bits + M.RESPONSE
    local req = last[key]
    if req == nil then
        bits = bits + M.NO_REQUEST
    else
        local rk = kind[req]
        code[num] = code[req]
        if rk % 4 >= M.TPM12 and bits % 4 < M.TPM12 and not tpm2_tag then bits = bits + M.TPM12 end  -- as its request
        if rk % 4 < M.TPM12 and bits % 4 >= M.TPM12 then bits = bits - M.TPM12 end
        if peer[req] == nil then
            peer[req] = num
            peer[num] = req
        else
            bits = bits + M.CONTINUED
            peer[num] = req
        end
    end
    kind[num] = bits
    return bits
end

function M.has(kind, bit)
    return kind % (bit + bit) >= bit
end

return M
