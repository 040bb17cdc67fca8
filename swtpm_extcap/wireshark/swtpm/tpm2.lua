-- swtpm/tpm2.lua: the TPM 2.0 decoder, an engine that walks the generated tables.
--
-- A command: header (tag, commandSize, commandCode), its handles, when tagged
-- TPM_ST_SESSIONS the authorization area (authorizationSize, then sessions until that size
-- is used: sessionHandle, nonce, sessionAttributes, hmac), then its parameters. A response:
-- header (tag, responseSize, responseCode); on success its handles, when tagged
-- TPM_ST_SESSIONS parameterSize, the parameters, and one session per command session.
-- Structures are walked by their generated layouts: a TPM2B's size then its bytes or its
-- structure, a TPMS/TPMT member by member, a TPMU by the value of its selector, a TPML's
-- elements by its count. When a session of the command sets decrypt (of the response,
-- encrypt) and the first parameter is a TPM2B, that parameter is encrypted: its size is
-- shown and its bytes as tpm2.encrypted, never decoded.
--
-- The decode stops where the bytes stop making sense (cut off, a size larger than what is
-- left, a selector with no arm, an unknown command) and says so in an expert item; the bytes
-- it could not read are one tpm2.undecoded item. Nothing here raises a Lua error on any input.
local token, S = ...
if token ~= "swtpm-extcap" then return end

local T, F, RC = S.T, S.fields, S.rc
local TYPES, COMMANDS, PARTS = T.types, T.commands, T.parts
local FIELD = F.by_index
local C = F.compat
local byte, format, concat, floor = string.byte, string.format, table.concat, math.floor

local M = {}

local ST_SESSIONS = 0x8002
local MAX_ELEMENTS = 256  -- elements of one list decoded one by one (the rest: undecoded)

local CC_NAMES = T.constants.TPM_CC
local ALG_NAMES = T.constants.TPM_ALG_ID

M.experts = {
    truncated = ProtoExpert.new("tpm2.truncated", "Message ends inside a field",
                                expert.group.MALFORMED, expert.severity.WARN),
    size = ProtoExpert.new("tpm2.size_mismatch", "Size field does not match the message",
                           expert.group.MALFORMED, expert.severity.WARN),
    selector = ProtoExpert.new("tpm2.unknown_selector", "Union selector with no arm",
                               expert.group.MALFORMED, expert.severity.WARN),
    unknown_cc = ProtoExpert.new("tpm2.unknown_command", "Unknown command code",
                                 expert.group.UNDECODED, expert.severity.NOTE),
    no_request = ProtoExpert.new("tpm2.no_request", "No request seen: parameters not decoded",
                                 expert.group.UNDECODED, expert.severity.NOTE),
    trailing = ProtoExpert.new("tpm2.trailing", "Bytes after the message's structure",
                               expert.group.MALFORMED, expert.severity.WARN),
    failed = ProtoExpert.new("tpm2.failed", "The TPM 2.0 command failed",
                             expert.group.RESPONSE_CODE, expert.severity.ERROR),
    overflow = ProtoExpert.new("tpm2.too_many_items", "Too many items: the rest is not shown",
                               expert.group.UNDECODED, expert.severity.NOTE),
    encrypted = ProtoExpert.new("tpm2.encrypted_parameter", "First parameter encrypted by a session",
                                expert.group.SECURITY, expert.severity.CHAT),
}

-- members of each structure whose values other members need (counts, selectors)
local NEEDS = {}
for name, t in pairs(TYPES) do
    if t[1] == "s" then
        local need
        for i = 2, #t do
            local m = t[i]
            if type(m.count) == "string" then need = need or {}; need[m.count] = true end
            if m.sel then need = need or {}; need[m.sel] = true end
        end
        NEEDS[name] = need
    end
end

local function uint(s, off, n)
    if n == 4 then
        local a, b, c, d = byte(s, off + 1, off + 4)
        return ((a * 256 + b) * 256 + c) * 256 + d
    elseif n == 2 then
        local a, b = byte(s, off + 1, off + 2)
        return a * 256 + b
    elseif n == 1 then
        return byte(s, off + 1)
    end
    local v = 0
    for i = off + 1, off + n do v = v * 256 + byte(s, i) end
    return v
end
M.uint = uint

-- ---------------------------------------------------------------- stops

-- The message ends (or a size says it ends) before what the layout needs: the rest is one
-- undecoded item with an expert saying what was missing.
local function stop_at(ctx, parent, off, stop, what, expert_)
    if stop > off then
        local item = ctx:add(parent, F.undecoded, off, stop - off)
        if item then ctx:text(item, " (" .. what .. ")") end
    end
    ctx.problem = ctx.problem or what
    if ctx.root then ctx:expert(expert_, what) end
    return nil
end

local function truncated(ctx, parent, name, off, stop, need)
    return stop_at(ctx, parent, off, stop,
                   format("%s needs %d bytes, %d left", name, need, stop - off), M.experts.truncated)
end

-- ---------------------------------------------------------------- summaries (labels)

local function pcr_list(s, off, count)
    local pcrs = {}
    for i = 0, count - 1 do
        local b = byte(s, off + i + 1)
        for bit = 0, 7 do
            if b % 2 == 1 then pcrs[#pcrs + 1] = i * 8 + bit end
            b = floor(b / 2)
        end
    end
    return pcrs
end
M.pcr_list = pcr_list

local function alg_short(v)
    local name = ALG_NAMES[v]
    if name == nil then return format("0x%04x", v) end
    return name:gsub("^TPM_ALG_", ""):lower()
end

-- ---------------------------------------------------------------- the walk

local walk_type

-- one member at off; returns the offset after it (nil: stopped) and its value when it is a
-- number of at most 4 bytes
local function walk_member(ctx, parent, m, off, stop, values)
    local tname, fid = m[2], m[3]
    local count = m.count
    if count ~= nil then
        if type(count) == "string" then count = values and values[count] or 0 end
        if tname == "BYTE" then
            if off + count > stop then return truncated(ctx, parent, m[1], off, stop, count) end
            local item = ctx:add(parent, FIELD[fid], off, count)
            if m[1] == "pcrSelect" and count > 0 then
                local pcrs = pcr_list(ctx.s, off, count)
                ctx.pcrs = pcrs
                local pcr_f = F.pcr
                if ctx:wants(pcr_f) then  -- (a filter on tpm2.pcr alone: beside the selection)
                    for _, p in ipairs(pcrs) do ctx:add_value(item or parent, pcr_f, off, 0, p) end
                end
                if item then
                    ctx:text(item, #pcrs > 0 and (" (PCR " .. concat(pcrs, ", ") .. ")") or " (none)")
                end
            end
            return off + count
        end
        local shown = count
        if count > MAX_ELEMENTS then shown = MAX_ELEMENTS end
        for _ = 1, shown do
            off = walk_type(ctx, parent, tname, fid, m[1], off, stop)
            if off == nil then return nil end
        end
        if count > shown then
            return stop_at(ctx, parent, off, stop, format("%s: %d elements, the first %d decoded",
                                                           m[1], count, shown), M.experts.overflow)
        end
        return off
    end
    if m.sel then  -- a union: the arm its selector's value picks
        local arms = TYPES[tname][2]
        local v = values and values[m.sel]
        local arm = arms[v]
        if arm == nil then
            return stop_at(ctx, parent, off, stop,
                           format("%s: no arm for %s = 0x%x", tname, m.sel, v or -1), M.experts.selector)
        end
        if arm == false then return off end
        if arm.fixed then
            local n = arm.fixed
            if off + n > stop then return truncated(ctx, parent, arm[1], off, stop, n) end
            local item = ctx:add(parent, FIELD[arm[3]], off, n)
            if item and ctx.visible then item:prepend_text(m[1] .. ".") end
            return off + n
        end
        -- the arm's item shows the union member's name too: "keyBits.aes: 128"
        return walk_type(ctx, parent, arm[2], arm[3], arm[1], off, stop, ctx.visible and m[1] .. "." or nil)
    end
    return walk_type(ctx, parent, tname, fid, m[1], off, stop)
end

local function walk_members(ctx, parent, tname, t, off, stop)
    local need = NEEDS[tname]
    local values = (need or ctx.visible) and {} or nil
    for i = 2, #t do
        local m = t[i]
        local v
        off, v = walk_member(ctx, parent, m, off, stop, values)
        if off == nil then return nil, values end
        if values then values[m[1]] = v end
    end
    return off, values
end

local function label_struct(ctx, item, tname, values, s)
    if item == nil or values == nil then return end
    if tname == "TPMS_PCR_SELECTION" then
        local pcrs = ctx.pcrs or {}
        local text = alg_short(values.hash or 0) .. ": " ..
            (#pcrs > 0 and ("PCR " .. concat(pcrs, ", ")) or "none")
        ctx.selections = ctx.selections or {}
        ctx.selections[#ctx.selections + 1] = text
        item:append_text(": " .. text)
    elseif tname == "TPML_PCR_SELECTION" then
        local sel = ctx.selections
        item:append_text(": " .. (sel and #sel > 0 and concat(sel, "; ") or "none"))
        ctx.selections = nil
    elseif tname == "TPMT_HA" or tname == "TPMS_PCR_SELECT" then
        if values.hashAlg then item:append_text(": " .. alg_short(values.hashAlg)) end
    elseif tname == "TPMT_PUBLIC" then
        if values.type then
            item:append_text(": " .. alg_short(values.type) .. ", nameAlg " .. alg_short(values.nameAlg or 0))
        end
    elseif tname == "TPMS_TAGGED_PROPERTY" then
        local pt = T.constants.TPM_PT[values.property or -1]
        if pt then item:append_text(": " .. pt .. " = " .. format("0x%08x", values.value or 0)) end
    elseif tname == "TPMS_ALG_PROPERTY" then
        item:append_text(": " .. (ALG_NAMES[values.alg or -1] or format("0x%04x", values.alg or 0)))
    end
end

-- one value of type tname (field fid, member name) at off; prefix: before its item's label
walk_type = function(ctx, parent, tname, fid, name, off, stop, prefix)
    local t = TYPES[tname]
    local kind = t[1]
    local s = ctx.s
    if kind == "u" then
        local n = t[2]
        if off + n > stop then return truncated(ctx, parent, name, off, stop, n) end
        local v = n <= 4 and uint(s, off, n) or nil
        local item = ctx:add(parent, FIELD[fid], off, n)
        local at = item or parent  -- a filter on a bit alone: the bits without their number
        if t[5] then
            local bits = F.bits[t[5]]
            if bits then
                for _, bf in ipairs(bits) do ctx:add(at, bf, off, n) end
            end
        end
        if t[6] and v then  -- a handle: its range
            ctx:add_value(at, F.handle_type, off, 0, floor(v / 0x1000000))
        end
        if prefix and item then item:prepend_text(prefix) end
        return off + n, v
    end
    if kind == "b" then
        if off + 2 > stop then return truncated(ctx, parent, name .. " size", off, stop, 2) end
        local size = uint(s, off, 2)
        -- the size first, then the bytes: a sibling, not a child (a child before its parent's
        -- start gets a wrong position in PDML and JSON)
        ctx:add(parent, F.size, off, 2)
        if off + 2 + size > stop then
            ctx:add(parent, FIELD[fid], off + 2, stop - off - 2)
            return stop_at(ctx, parent, stop, stop, format("%s: size %d, %d bytes left", name, size,
                                                           stop - off - 2), M.experts.size)
        end
        local item = ctx:add(parent, FIELD[fid], off + 2, size)
        if item and ctx.visible then
            if size == 0 then item:set_text(name .. ": (empty)") end  -- not <MISSING>
            if prefix then item:prepend_text(prefix) end
        end
        return off + 2 + size, size
    end
    if kind == "z" then
        if off + 2 > stop then return truncated(ctx, parent, name .. " size", off, stop, 2) end
        local size = uint(s, off, 2)
        local inner = t[2]
        local item = ctx:add(parent, FIELD[fid], off, 2 + size)
        if item and prefix then item:prepend_text(prefix) end
        local sub = item or parent
        ctx:add(sub, F.size, off, 2)
        if size == 0 then return off + 2, 0 end
        local end_ = off + 2 + size
        if end_ > stop then
            stop_at(ctx, sub, off + 2, stop, format("%s: size %d, %d bytes left", name, size,
                                                    stop - off - 2), M.experts.size)
            return nil
        end
        local it = TYPES[inner[2]]
        local after, values = walk_members(ctx, sub, inner[2], it, off + 2, end_)
        if after == nil then return nil end
        if ctx.visible then label_struct(ctx, item, inner[2], values, s) end
        if after < end_ then
            local rest = ctx:add(sub, F.undecoded, after, end_ - after)
            ctx:text(rest, format(" (%d bytes that %s does not use)", end_ - after, inner[2]))
            if ctx.root then
                ctx:expert(M.experts.trailing, format("%s: %d bytes after its %s", name, end_ - after, inner[2]))
            end
        end
        return end_, size
    end
    if kind == "s" then
        local item = fid > 0 and ctx:add(parent, FIELD[fid], off, 0) or nil
        local after, values = walk_members(ctx, item or parent, tname, t, off, stop)
        if item then
            item:set_len((after or stop) - off)
            if prefix then item:prepend_text(prefix) end
            if ctx.visible then label_struct(ctx, item, tname, values, s) end
        end
        return after
    end
    -- a union reached without its selector (not in the reference's layouts)
    return stop_at(ctx, parent, off, stop, tname .. " without a selector", M.experts.selector)
end

-- ---------------------------------------------------------------- message parts

-- a list of members (handles or parameters); returns the offset after them (nil: stopped)
local function walk_list(ctx, parent, list, off, stop, encrypted_first)
    for i, m in ipairs(list) do
        if i == 1 and encrypted_first then
            local t = TYPES[m[2]]
            if t[1] == "b" or t[1] == "z" then
                if off + 2 > stop then return truncated(ctx, parent, m[1] .. " size", off, stop, 2) end
                local size = uint(ctx.s, off, 2)
                local n = off + 2 + size > stop and stop - off - 2 or size
                ctx:add(parent, F.size, off, 2)
                local item = ctx:add(parent, F.encrypted, off + 2, n)
                ctx:text(item, " (" .. m[1] .. ")")
                if ctx.visible then ctx:expert(M.experts.encrypted, m[1] .. " is encrypted") end
                ctx.encrypted = m[1]
                if n < size then
                    return stop_at(ctx, parent, off + 2 + n, stop, m[1] .. ": size past the end",
                                   M.experts.size)
                end
                off = off + 2 + size
                goto continue
            end
        end
        do
            local t = TYPES[m[2]]
            if t[1] == "x" then
                return stop_at(ctx, parent, off, stop, m[1] .. ": a union parameter", M.experts.selector)
            end
            local v
            off, v = walk_type(ctx, parent, m[2], m[3], m[1], off, stop)
            if off == nil then return nil end
            ctx.values[m[1]] = v
        end
        ::continue::
    end
    return off
end

-- The sessions of an authorization area: positions and attributes, read before the tree
-- (a response's sessions follow its parameters, and their encrypt bit says how to read them).
local function scan_sessions(s, off, stop, command)
    local sessions = {}
    while off < stop do
        local start = off
        if command then
            if off + 4 > stop then break end
            off = off + 4
        end
        if off + 2 > stop then break end
        off = off + 2 + uint(s, off, 2)
        if off + 1 > stop then break end
        local attrs = byte(s, off + 1)
        off = off + 1
        if off + 2 > stop then break end
        off = off + 2 + uint(s, off, 2)
        if off > stop then break end
        sessions[#sessions + 1] = { start, off, attrs, command and uint(s, start, 4) or nil }
    end
    return sessions
end
M.scan_sessions = scan_sessions

local function has_bit(v, bit)
    return floor(v / bit) % 2 == 1
end

local function add_sessions(ctx, parent, off, stop, command)
    local part = command and PARTS.commandSession or PARTS.responseSession
    local tname = part[2]
    local count = 0
    while off < stop do
        local before = off
        off = walk_type(ctx, parent, tname, part[3], part[1], off, stop)
        if off == nil then return nil, count end
        count = count + 1
        if C and ctx.compat then
            local c = C
            local s = ctx.s
            local at = before
            if command then
                ctx:add(ctx.compat_item or parent, c.handle.TPMI_SH_AUTH_SESSION, at, 4)
                at = at + 4
            end
            local nsize = uint(s, at, 2)
            ctx:add(ctx.compat_item or parent, c.auth_nonce_size, at, 2)
            ctx:add(ctx.compat_item or parent, c.auth_nonce, at + 2, nsize)
            at = at + 2 + nsize
            for _, bf in ipairs(c.attribs) do ctx:add(ctx.compat_item or parent, bf, at, 1) end
            at = at + 1
            local hsize = uint(s, at, 2)
            ctx:add(ctx.compat_item or parent, c.session_auth_size, at, 2)
            ctx:add(ctx.compat_item or parent, c.session_auth, at + 2, hsize)
        end
        if off == before then break end
    end
    return off, count
end

-- what Wireshark's own TPM dissector called the parameters it decoded (compat fields):
-- command -> side -> parameter name -> {size field, bytes field}
local COMPAT_PARAMS = C and {
    [0x131] = {
        command = { inSensitive = { "sensitive_create_size", "sensitive_create" },
                    inPublic = { "public_size", "public" }, outsideInfo = { "data_size", "data" } },
        response = { outPublic = { "public_size", "public" },
                     creationData = { "creation_data_size", "creation_data" },
                     creationHash = { "digest_size", "digest" }, name = { "name_size", "name" } },
    },
    [0x191] = {
        command = { inSensitive = { "sensitive_create_size", "sensitive_create" },
                    inPublic = { "template_size", "template" } },
        response = { outPrivate = { "private_size", "private" }, outPublic = { "public_size", "public" },
                     name = { "name_size", "name" } },
    },
    [0x176] = {
        command = { nonceCaller = { "auth_nonce_size", "auth_nonce" },
                    encryptedSalt = { "enc_secret_size", "enc_secret" } },
        response = { nonceTPM = { "auth_nonce_size", "auth_nonce" } },
    },
} or {}

-- the compat fields of the parameters (offsets found again by walking without a tree)
local function compat_params(ctx, parent, cc, side, list, off, stop)
    local map = COMPAT_PARAMS[cc] and COMPAT_PARAMS[cc][side]
    local s = ctx.s
    if cc == 0x144 and side == "command" and off + 2 <= stop then
        ctx:add(parent, C.startup_type, off, 2)
        ctx:add(parent, C.statup_type, off, 2)
        return
    end
    if map == nil and cc ~= 0x176 then return end
    local probe = setmetatable({ mode = 0, s = s, values = {}, items = 0 }, S.tree.Ctx)
    for _, m in ipairs(list) do
        local start = off
        off = walk_type(probe, nil, m[2], m[3], m[1], off, stop)
        if off == nil then return end
        local pair = map and map[m[1]]
        if pair and start + 2 <= off then
            ctx:add(parent, C[pair[1]], start, 2)
            ctx:add(parent, C[pair[2]], start + 2, off - start - 2)
        end
        if cc == 0x176 and side == "command" then
            if m[1] == "sessionType" then ctx:add(parent, C.session_type, start, 1) end
            if m[1] == "authHash" then ctx:add(parent, C.alg_hash, start, 2) end
            if m[1] == "symmetric" then
                ctx:add(parent, C.sym_alg, start, 2)
                if uint(s, start, 2) ~= 0x0010 and start + 6 <= off then
                    ctx:add(parent, C.sym_alg_keybits, start + 2, 2)
                    ctx:add(parent, C.sym_alg_mode, start + 4, 2)
                end
            end
        end
    end
end

-- ---------------------------------------------------------------- without the tree

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
    ctx:expert(M.experts.failed, what .. " failed: " .. text)
end

-- ---------------------------------------------------------------- commands and responses

local function add_handles(ctx, parent, list, off, stop)
    local handles = {}
    for _, m in ipairs(list) do
        if off + 4 > stop then return truncated(ctx, parent, m[1], off, stop, 4), handles end
        local v = uint(ctx.s, off, 4)
        handles[#handles + 1] = v
        local item = ctx:add(parent, FIELD[m[3]], off, 4)
        -- (with a filter on the type alone, the handle's own item is not there: beside it)
        ctx:add_value(item or parent, F.handle_type, off, 0, floor(v / 0x1000000))
        ctx:add_value(item or parent, F.handle, off, 0, v)
        if C and ctx.compat then
            ctx:add(ctx.compat_item or parent, C.handle[m[2]] or C.handle.TPM_HANDLE, off, 4)
        end
        off = off + 4
    end
    return off, handles
end

local function header(ctx, root, parts, what)
    local s = ctx.s
    local off = 0
    for _, m in ipairs(parts) do
        off = walk_type(ctx, root, m[2], m[3], m[1], off, #s)
    end
    return off
end

local function compat_header(ctx, root, is_request, size_field_value)
    if not (C and ctx.compat) then return end
    local item = ctx:add(root, C.proto, 0, #ctx.s)
    if item and ctx.visible then item:set_hidden() end
    ctx.compat_item = item or root
    local hdr = ctx:add(ctx.compat_item, is_request and C.req_header or C.resp_header, 0, 10)
    local h = hdr or ctx.compat_item
    if is_request then
        ctx:add(h, C.req_tag, 0, 2)
        ctx:add(h, C.req_size, 2, 4)
        ctx:add(h, C.req_cc, 6, 4)
    else
        ctx:add(h, C.resp_tag, 0, 2)
        ctx:add(h, C.resp_size, 2, 4)
        ctx:add(h, C.resp_rc, 6, 4)
    end
end

-- the command a response answers, and its response code taken apart
local function rc_fields(ctx, root, rc, cc)
    if cc ~= nil then ctx:add_value(root, F.command, 6, 0, cc) end
    if ctx.mode == 0 then return end
    if rc == 0 then  -- the name only (the profile's "Response code" column shows it)
        ctx:add_value(root, F.rc_name, 6, 0, RC.SUCCESS)
        return
    end
    local d = RC.decode(rc)
    ctx:add_value(root, F.rc_format, 6, 0, d.format)
    if d.name then ctx:add_value(root, F.rc_name, 6, 0, d.name) end
    ctx:add_value(root, F.rc_base, 6, 0, d.base)
    if d.handle then ctx:add_value(root, F.rc_handle, 6, 0, d.handle) end
    if d.parameter then ctx:add_value(root, F.rc_parameter, 6, 0, d.parameter) end
    if d.session then ctx:add_value(root, F.rc_session, 6, 0, d.session) end
    if d.warning then ctx:add_value(root, F.rc_warning, 6, 0, true) end
    if d.vendor then ctx:add_value(root, F.rc_vendor, 6, 0, true) end
    if d.tpm12 then ctx:add_value(root, F.rc_tpm12, 6, 0, true) end
end

-- The fields of the header only (tshark asking for nothing else: tpm2.commandCode,
-- tpm2.responseCode, tpm2.rc.*, tpm.req.cc, tpm.resp.rc, "tpm"...): no walk.
M.HEADER_FIELDS = {}
for _, group in ipairs({ PARTS.command, PARTS.response }) do
    for _, m in ipairs(group) do M.HEADER_FIELDS[#M.HEADER_FIELDS + 1] = FIELD[m[3]] end
end
for _, key in ipairs({ "command", "rc_format", "rc_name", "rc_base", "rc_handle", "rc_parameter",
                       "rc_session", "rc_warning", "rc_vendor", "rc_tpm12", "alias" }) do
    M.HEADER_FIELDS[#M.HEADER_FIELDS + 1] = F[key]
end
if C then
    for _, key in ipairs({ "proto", "req_header", "req_tag", "req_size", "req_cc", "resp_header",
                           "resp_tag", "resp_size", "resp_rc" }) do
        M.HEADER_FIELDS[#M.HEADER_FIELDS + 1] = C[key]
    end
end

function M.header_only(ctx, root, is_request, cc)
    local s = ctx.s
    if #s < 10 then return end
    compat_header(ctx, root, is_request)
    header(ctx, root, is_request and PARTS.command or PARTS.response)
    if not is_request then rc_fields(ctx, root, uint(s, 6, 4), cc) end
end

-- Decode a TPM 2.0 command into the tree: ctx from tree.begin (ctx.s: the message's bytes),
-- root: where its items go (the protocol's item, or the frame's tree).
function M.command(ctx, root)
    local s = ctx.s
    local len = #s
    ctx.values = {}
    if len < 10 then
        truncated(ctx, root, "the command header", 0, len, 10)
        return
    end
    local tag, size, cc = uint(s, 0, 2), uint(s, 2, 4), uint(s, 6, 4)
    compat_header(ctx, root, true)
    header(ctx, root, PARTS.command)
    local stop = len
    if size ~= len then
        if size < len and size >= 10 then stop = size end
        ctx:expert(M.experts.size, format("commandSize %d, the message has %d bytes", size, len))
    end
    local cmd = COMMANDS[cc]
    if cmd == nil then
        stop_at(ctx, root, 10, stop, format("unknown command code 0x%08x", cc), M.experts.unknown_cc)
        return
    end
    local off = add_handles(ctx, root, cmd[2], 10, stop)
    if off == nil then return end
    if C and ctx.compat and #cmd[2] > 0 then
        ctx:add(ctx.compat_item, C.req_hndl, 10, off - 10)
    end
    local decrypt = false
    if tag == ST_SESSIONS then
        local part = PARTS.authorizationSize
        if off + 4 > stop then
            truncated(ctx, root, part[1], off, stop, 4)
            return
        end
        local asize = uint(s, off, 4)
        local auth_item
        if C and ctx.compat then
            auth_item = ctx:add(ctx.compat_item, C.req_auth, off, 4 + asize)
            ctx:add(auth_item or ctx.compat_item, C.autharea_size, off, 4)
        end
        walk_type(ctx, root, part[2], part[3], part[1], off, stop)
        off = off + 4
        local astop = off + asize
        if astop > stop then
            stop_at(ctx, root, off, stop, format("authorizationSize %d, %d bytes left", asize, stop - off),
                    M.experts.size)
            return
        end
        for _, sess in ipairs(scan_sessions(s, off, astop, true)) do
            if has_bit(sess[3], 0x20) then decrypt = true end
        end
        local saved = ctx.compat_item
        if auth_item then ctx.compat_item = auth_item end
        local after = add_sessions(ctx, root, off, astop, true)
        ctx.compat_item = saved
        if after == nil then return end
        off = astop
    end
    local params_start = off
    off = walk_list(ctx, root, cmd[3], off, stop, decrypt)
    if C and ctx.compat then compat_params(ctx, ctx.compat_item, cc, "command", cmd[3], params_start, stop) end
    if off ~= nil and off < stop then
        stop_at(ctx, root, off, stop, format("%d bytes after the parameters", stop - off), M.experts.trailing)
    end
end

-- Decode a TPM 2.0 response to command cc (nil: no request seen) with nsessions sessions
-- into the tree (as M.command).
function M.response(ctx, root, cc, nsessions)
    local s = ctx.s
    local len = #s
    ctx.values = {}
    if len < 10 then
        truncated(ctx, root, "the response header", 0, len, 10)
        return
    end
    local tag, size, rc = uint(s, 0, 2), uint(s, 2, 4), uint(s, 6, 4)
    compat_header(ctx, root, false)
    header(ctx, root, PARTS.response)
    rc_fields(ctx, root, rc, cc)
    local stop = len
    if size ~= len then
        if size < len and size >= 10 then stop = size end
        ctx:expert(M.experts.size, format("responseSize %d, the message has %d bytes", size, len))
    end
    if rc ~= 0 or stop <= 10 then
        if stop > 10 then
            stop_at(ctx, root, 10, stop, format("%d bytes after an error code", stop - 10), M.experts.trailing)
        end
        return
    end
    local cmd = cc and COMMANDS[cc]
    if cmd == nil then
        stop_at(ctx, root, 10, stop, cc and format("unknown command code 0x%08x", cc)
                or "no request seen: the command is unknown", M.experts.no_request)
        return
    end
    local off = add_handles(ctx, root, cmd[4], 10, stop)
    if off == nil then return end
    if C and ctx.compat and #cmd[4] > 0 then ctx:add(ctx.compat_item, C.req_hndl, 10, off - 10) end
    local pstop = stop
    local encrypt = false
    if tag == ST_SESSIONS then
        local part = PARTS.parameterSize
        if off + 4 > stop then
            truncated(ctx, root, part[1], off, stop, 4)
            return
        end
        local psize = uint(s, off, 4)
        walk_type(ctx, root, part[2], part[3], part[1], off, stop)
        if C and ctx.compat then ctx:add(ctx.compat_item, C.resp_param_size, off, 4) end
        off = off + 4
        pstop = off + psize
        if pstop > stop then
            stop_at(ctx, root, off, stop, format("parameterSize %d, %d bytes left", psize, stop - off),
                    M.experts.size)
            return
        end
        for _, sess in ipairs(scan_sessions(s, pstop, stop, false)) do
            if has_bit(sess[3], 0x40) then encrypt = true end
        end
    end
    local params_start = off
    if C and ctx.compat and pstop > off then
        local area = ctx:add(ctx.compat_item, C.resp_params, off, pstop - off)
        if not COMPAT_PARAMS[cc] and cc ~= 0x144 then
            ctx:add(area or ctx.compat_item, C.params, off, pstop - off)
        end
    end
    off = walk_list(ctx, root, cmd[5], off, pstop, encrypt)
    if C and ctx.compat then compat_params(ctx, ctx.compat_item, cc, "response", cmd[5], params_start, pstop) end
    if off == nil then return end
    if off < pstop then
        stop_at(ctx, root, off, pstop, format("%d bytes after the parameters", pstop - off), M.experts.trailing)
        off = pstop
    end
    if tag == ST_SESSIONS then
        local after, count = add_sessions(ctx, root, off, stop, false)
        if after ~= nil and after < stop then
            stop_at(ctx, root, after, stop, format("%d bytes after the sessions", stop - after), M.experts.trailing)
        end
        if nsessions and count ~= nsessions then
            ctx:expert(M.experts.size, format("%d sessions in the response, %d in the command", count, nsessions))
        end
    end
    return
end

return M
