-- swtpm/walk.lua: the structure walker of the TPM 2.0 decoder, over the generated tables.
--
-- Structures are walked by their generated layouts (swtpm/tables.lua): a TPM2B's size then
-- its bytes or its structure, a TPMS/TPMT member by member, a TPMU by the value of its
-- selector, a TPML's elements by its count. Items are labelled with a summary where one helps
-- (a PCR selection's "sha256: PCR 0, 7", a TPMT_PUBLIC's type and nameAlg). walk_list walks
-- a list of handles or parameters; when a session of the command sets decrypt (of the
-- response, encrypt) and the first parameter is a TPM2B, that parameter is encrypted: its size
-- is shown and its bytes as tpm2.encrypted, never decoded. scan_sessions reads the sessions of
-- an authorization area without a tree.
--
-- The walk stops where the bytes stop making sense (cut off, a size larger than what is left,
-- a selector with no arm) and says so in an expert item; the bytes it could not read are one
-- tpm2.undecoded item. Nothing here raises a Lua error on any input. The experts of the
-- "tpm2" protocol are made here, the first of its parts loaded (swtpm/info.lua and
-- swtpm/tpm2.lua use them too).
local token, S = ...
if token ~= "swtpm-extcap" then return end

local T, F = S.T, S.fields
local TYPES = T.types
local FIELD = F.by_index
local byte, format, concat, floor = string.byte, string.format, table.concat, math.floor

local M = {}

local MAX_ELEMENTS = 256  -- elements of one list decoded one by one (the rest: undecoded)

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
M.stop_at, M.truncated = stop_at, truncated

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
M.alg_short = alg_short

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
M.walk_type = walk_type

-- ---------------------------------------------------------------- lists and sessions

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
M.walk_list = walk_list

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

return M
