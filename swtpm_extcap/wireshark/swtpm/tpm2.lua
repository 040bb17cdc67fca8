-- swtpm/tpm2.lua: the TPM 2.0 decoder's messages: commands and responses into the tree.
--
-- A command: header (tag, commandSize, commandCode), its handles, when tagged
-- TPM_ST_SESSIONS the authorization area (authorizationSize, then sessions until that size
-- is used: sessionHandle, nonce, sessionAttributes, hmac), then its parameters. A response:
-- header (tag, responseSize, responseCode); on success its handles, when tagged
-- TPM_ST_SESSIONS parameterSize, the parameters, and one session per command session.
-- The structures in them are walked by swtpm/walk.lua (the generated tables' layouts, the
-- encrypted first parameter); the Info column is read without the tree by swtpm/info.lua.
-- Here too: the fields of Wireshark's own TPM dissector on the same bytes (compat: tpm.*),
-- and a header-only decode for tshark asking for nothing past the header.
--
-- The decode stops where the bytes stop making sense (cut off, a size larger than what is
-- left, a selector with no arm, an unknown command) and says so in an expert item; the bytes
-- it could not read are one tpm2.undecoded item. Nothing here raises a Lua error on any input.
local token, S = ...
if token ~= "swtpm-extcap" then return end

local T, F, RC, W = S.T, S.fields, S.rc, S.walk
local COMMANDS, PARTS = T.commands, T.parts
local FIELD = F.by_index
local C = F.compat
local format, floor = string.format, math.floor
local uint, stop_at, truncated = W.uint, W.stop_at, W.truncated
local walk_type, walk_list, scan_sessions = W.walk_type, W.walk_list, W.scan_sessions

local M = {}

local ST_SESSIONS = 0x8002

M.experts = W.experts  -- (all of the protocol's: swtpm.lua registers them)

-- ---------------------------------------------------------------- sessions and compat

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

-- the header's items: Wireshark's, ours, and a response's code taken apart
local function header_items(ctx, root, is_request, cc)
    compat_header(ctx, root, is_request)
    header(ctx, root, is_request and PARTS.command or PARTS.response)
    if not is_request then rc_fields(ctx, root, uint(ctx.s, 6, 4), cc) end
end

function M.header_only(ctx, root, is_request, cc)
    if #ctx.s < 10 then return end
    header_items(ctx, root, is_request, cc)
end

local OPENING = { [true] = { "the command header", "commandSize" },
                  [false] = { "the response header", "responseSize" } }

-- The start of a message: its header and where it ends (its size field, when that is
-- shorter than the bytes and still holds the header). Returns the tag, the command or
-- response code and the end; nothing when the bytes stop before the header's end.
local function open_message(ctx, root, is_request, cc)
    local s = ctx.s
    local len = #s
    ctx.values = {}
    local what = OPENING[is_request]
    if len < 10 then
        truncated(ctx, root, what[1], 0, len, 10)
        return
    end
    local tag, size = uint(s, 0, 2), uint(s, 2, 4)
    header_items(ctx, root, is_request, cc)
    local stop = len
    if size ~= len then
        if size < len and size >= 10 then stop = size end
        ctx:expert(M.experts.size, format("%s %d, the message has %d bytes", what[2], size, len))
    end
    return tag, uint(s, 6, 4), stop
end

-- A size field (authorizationSize, parameterSize: part) at off: its value; nil when the
-- message stops before it
local function size_field(ctx, root, part, off, stop)
    if off + 4 > stop then
        truncated(ctx, root, part[1], off, stop, 4)
        return nil
    end
    return uint(ctx.s, off, 4)
end

-- The end of the area that size field announced, its bytes starting at off; nil when that
-- is past the message's end (the rest: undecoded)
local function area_end(ctx, root, part, size, off, stop)
    local after = off + size
    if after > stop then
        stop_at(ctx, root, off, stop, format("%s %d, %d bytes left", part[1], size, stop - off), M.experts.size)
        return nil
    end
    return after
end

-- the handles after the header; the offset after them (nil: stopped)
local function handle_area(ctx, root, list, stop)
    local off = add_handles(ctx, root, list, 10, stop)
    if off ~= nil and C and ctx.compat and #list > 0 then
        ctx:add(ctx.compat_item, C.req_hndl, 10, off - 10)
    end
    return off
end

-- Decode a TPM 2.0 command into the tree: ctx from tree.begin (ctx.s: the message's bytes),
-- root: where its items go (the protocol's item, or the frame's tree).
function M.command(ctx, root)
    local tag, cc, stop = open_message(ctx, root, true)
    if tag == nil then return end
    local s = ctx.s
    local cmd = COMMANDS[cc]
    if cmd == nil then
        stop_at(ctx, root, 10, stop, format("unknown command code 0x%08x", cc), M.experts.unknown_cc)
        return
    end
    local off = handle_area(ctx, root, cmd[2], stop)
    if off == nil then return end
    local decrypt = false
    if tag == ST_SESSIONS then
        local part = PARTS.authorizationSize
        local asize = size_field(ctx, root, part, off, stop)
        if asize == nil then return end
        local auth_item
        if C and ctx.compat then
            auth_item = ctx:add(ctx.compat_item, C.req_auth, off, 4 + asize)
            ctx:add(auth_item or ctx.compat_item, C.autharea_size, off, 4)
        end
        walk_type(ctx, root, part[2], part[3], part[1], off, stop)
        off = off + 4
        local astop = area_end(ctx, root, part, asize, off, stop)
        if astop == nil then return end
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
    local tag, rc, stop = open_message(ctx, root, false, cc)
    if tag == nil then return end
    local s = ctx.s
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
    local off = handle_area(ctx, root, cmd[4], stop)
    if off == nil then return end
    local pstop = stop
    local encrypt = false
    if tag == ST_SESSIONS then
        local part = PARTS.parameterSize
        local psize = size_field(ctx, root, part, off, stop)
        if psize == nil then return end
        walk_type(ctx, root, part[2], part[3], part[1], off, stop)
        if C and ctx.compat then ctx:add(ctx.compat_item, C.resp_param_size, off, 4) end
        off = off + 4
        pstop = area_end(ctx, root, part, psize, off, stop)
        if pstop == nil then return end
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
