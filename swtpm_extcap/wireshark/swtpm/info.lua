-- swtpm/info.lua: the Info column of TPM 2.0 messages, read without the tree.
--
-- Every dissection writes the Info column, with a tree or not, so these read the bytes
-- directly (the same text whatever the tree): a command's name, its handles and its PCR
-- selection, and the number of its sessions; a response's code and its text. A failed
-- response gets its expert item here too (always: Expert Info and -z expert count it).
local token, S = ...
if token ~= "swtpm-extcap" then return end

local T, F, RC, W = S.T, S.fields, S.rc, S.walk
local TYPES, COMMANDS = T.types, T.commands
local E = W.experts
local uint, pcr_list, alg_short, scan_sessions = W.uint, W.pcr_list, W.alg_short, W.scan_sessions
local byte, format, concat = string.byte, string.format, table.concat

local M = {}

local ST_SESSIONS = 0x8002

local CC_NAMES = T.constants.TPM_CC

-- "sha256: PCR 0, 7; sha1: PCR 0" of a TPML_PCR_SELECTION at off (nil when it does not fit)
local function selection_text(s, off, stop)
    if off + 4 > stop then return nil end
    local count = uint(s, off, 4)
    off = off + 4
    if count > 16 then return nil end
    local out = {}
    for _ = 1, count do
        if off + 3 > stop then return nil end
        local alg, n = uint(s, off, 2), byte(s, off + 3)
        off = off + 3
        if off + n > stop then return nil end
        local pcrs = pcr_list(s, off, n)
        off = off + n
        out[#out + 1] = alg_short(alg) .. ": " .. (#pcrs > 0 and ("PCR " .. concat(pcrs, ", ")) or "none")
    end
    return concat(out, "; ")
end

-- commands whose Info shows a PCR selection (one of the parameters before it are TPM2Bs)
M.has_selection = {}
for cc, cmd in pairs(COMMANDS) do
    for _, m in ipairs(cmd[3]) do
        if m[2] == "TPML_PCR_SELECTION" then M.has_selection[cc] = true break end
        if TYPES[m[2]][1] ~= "b" then break end
    end
end

-- The Info column of a command and the number of its sessions, read directly (the same
-- text whatever the tree): its name, its handles, and its PCR selection when its first
-- parameters before one are TPM2Bs (PCR_Read, PolicyPCR).
function M.command_info(s)
    local len = #s
    if len < 10 then return format("short command (%d bytes)", len), 0 end
    local tag, cc = uint(s, 0, 2), uint(s, 6, 4)
    local name = CC_NAMES[cc] or format("command 0x%08x", cc)
    local cmd = COMMANDS[cc]
    if cmd == nil then return name, 0 end
    if tag ~= ST_SESSIONS and #cmd[2] == 0 and not M.has_selection[cc] then return name, 0 end
    local parts = { name }
    local off = 10
    for _ = 1, #cmd[2] do
        if off + 4 > len then return concat(parts, " "), 0 end
        parts[#parts + 1] = F.handle_name(uint(s, off, 4))
        off = off + 4
    end
    local nsessions = 0
    if tag == ST_SESSIONS then
        if off + 4 > len then return concat(parts, " "), 0 end
        local asize = uint(s, off, 4)
        off = off + 4
        local astop = off + asize
        if astop > len then astop = len end
        nsessions = #scan_sessions(s, off, astop, true)
        off = off + asize
    end
    for _, m in ipairs(cmd[3]) do
        local t = TYPES[m[2]]
        if m[2] == "TPML_PCR_SELECTION" then
            local text = selection_text(s, off, len)
            if text then parts[#parts + 1] = text end
            break
        elseif t[1] == "b" and off + 2 <= len then
            off = off + 2 + uint(s, off, 2)
        else
            break
        end
    end
    return concat(parts, " "), nsessions
end

-- A response's code and its text ("TPM_RC_POLICY_FAIL (session 1)"); nil when cut off.
local RC_TEXT = {}
function M.response_info(s)
    if #s < 10 then return nil, format("short response (%d bytes)", #s) end
    local rc = uint(s, 6, 4)
    local text = RC_TEXT[rc]
    if text == nil then
        text = RC.text(RC.decode(rc), rc, S.tpm12 and S.tpm12.RC)
        RC_TEXT[rc] = text
    end
    return rc, text
end

-- The expert of a failed response (always: Expert Info and -z expert count it).
function M.failed(ctx, cc, text, what)
    what = what or cc and (CC_NAMES[cc] or format("command 0x%08x", cc)) or "a command"
    ctx:expert(E.failed, what .. " failed: " .. text)
end

return M
