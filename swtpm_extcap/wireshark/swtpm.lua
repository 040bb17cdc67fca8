-- swtpm.lua: Wireshark plugin for swtpm-extcap captures (SWTPM debug logs as pcapng).
--
-- Installed by `python -m swtpm_extcap install` (and install.sh) into Wireshark's Lua plugin
-- folder, together with the folder swtpm/ that holds its parts (each loaded from here):
--   swtpm/tables.lua  GENERATED from the TCG TPM 2.0 reference (structures, commands, names)
--   swtpm/walk.lua    the TPM 2.0 structure walker over those tables (and the tpm2 experts)
--   swtpm/info.lua    the Info column of TPM 2.0 messages, read without the tree
--   swtpm/tpm2.lua    "tpm2": every TPM 2.0 command and response, by the walker
--   swtpm/rc.lua      TPM 2.0 response codes (format 0/1, warnings, handle/parameter/session)
--   swtpm/fields.lua  the tpm2.* fields, and Wireshark's own tpm.* names on the same bytes
--   swtpm/tree.lua    what goes into the tree: only what the dissection needs
--   swtpm/state.lua   per file: requests and responses paired by TCP conversation
--   swtpm/tpm12.lua   "tpm12": TPM 1.2 messages
--   swtpm/ctrl.lua    "swtpm.ctrl": swtpm's control channel (TCP port 2323)
--   swtpm/notes.lua   frame comments as fields (pcr:, policy:, any other line)
--   swtpm/notice.lua  "swtpm.notice": a capture's own notices (UDP port 2325: SSH link down/back)
--   swtpm/stats.lua   Statistics > TPM commands (swtpm-extcap) and `tshark -z swtpm,commands`
-- This file registers the protocols and the "swtpm" postdissector (every frame of an
-- swtpm-extcap capture): the log line and run the frame comes from (swtpm.line, swtpm.run)
-- and for TPM and control messages the request/response link: swtpm.cc (the command on
-- requests AND responses), swtpm.request_in, swtpm.response_in, swtpm.time.
--
-- Where the line and run come from: swtpm-extcap writes them into the Ethernet addresses
-- (destination 02:00:RR:RR:RR:RR = run, source 02:00:LL:LL:LL:LL = log line, big-endian
-- u32). Older captures carry them only in the frame comment ("swtpm log line N: ..."),
-- which is read as a fallback.

local PLUGIN_VERSION = "0.2.0"
if set_plugin_info then
    set_plugin_info({
        version = PLUGIN_VERSION,
        description = "swtpm-extcap: TPM 2.0 decoder, SWTPM control channel, TPM 1.2, request/response links",
        repository = "swtpm-extcap (installed by python -m swtpm_extcap install)",
    })
end

-- Registered once, however many copies Wireshark finds (a system-wide and a personal
-- install, or -X lua_script beside an installed copy): the first copy loaded registers,
-- a later one stops here. A second Proto of the same name would be an error dialog at
-- every start. Wireshark loads the global folder's plugins first, then the personal ones.
-- (Each plugin runs in an environment of its own: the mark goes into the shared _G.)
if _G.swtpm_extcap_loaded then
    return
end
_G.swtpm_extcap_loaded = PLUGIN_VERSION

-- the parts: swtpm/<name>.lua next to this file. Wireshark also runs every .lua file under
-- its plugin folder by itself; a part run that way sees no token and does nothing.
local DIR = (debug.getinfo(1, "S").source or ""):match("^@(.*[/\\])") or ""
local S = { TPM_PORT = 2321, CTRL_PORT = 2323, CLIENT_PORT_BASE = 50000 }
local function part(name)
    local chunk, err = loadfile(DIR .. "swtpm/" .. name .. ".lua")
    if chunk == nil then error("swtpm.lua: cannot load its part swtpm/" .. name .. ".lua: " .. tostring(err)) end
    return chunk("swtpm-extcap", S)
end

S.p_swtpm = Proto("swtpm", "SWTPM (swtpm-extcap)")
S.p_ctrl = Proto("swtpm.ctrl", "SWTPM control channel")
S.p_tpm12 = Proto("tpm12", "TPM 1.2")
S.p_tpm2 = Proto("tpm2", "TPM 2.0 (swtpm-extcap)")

S.T = part("tables")
S.state = part("state")
S.tree = part("tree")
S.rc = part("rc")
S.fields = part("fields")
S.tpm12 = part("tpm12")
S.walk = part("walk")
S.info = part("info")
S.tpm2 = part("tpm2")
S.ctrl = part("ctrl")
S.notes = part("notes")
S.notice = part("notice")
S.stats = part("stats")

local state, treemod, tpm2, tpm12, notes = S.state, S.tree, S.tpm2, S.tpm12, S.notes
local info = S.info
local uint = S.walk.uint
local TPM_PORT, CTRL_PORT, CLIENT_PORT_BASE = S.TPM_PORT, S.CTRL_PORT, S.CLIENT_PORT_BASE
local CC_NAMES = S.T.constants.TPM_CC
local format, byte = string.format, string.byte

local p_swtpm, p_tpm2, p_tpm12 = S.p_swtpm, S.p_tpm2, S.p_tpm12

p_tpm2.fields = S.fields.list
do
    local experts = {}
    for _, e in pairs(tpm2.experts) do experts[#experts + 1] = e end
    p_tpm2.experts = experts
end

-- swtpm.cc: TPM 2.0 command codes and TPM 1.2 ordinals in one field (they do not overlap)
local COMMAND = {}
for code, name in pairs(CC_NAMES) do COMMAND[code] = name end
for code, name in pairs(tpm12.ORD) do COMMAND[code] = name end

local FT_REQUEST = frametype and frametype.REQUEST or nil
local FT_RESPONSE = frametype and frametype.RESPONSE or nil

local f = {
    line = ProtoField.uint32("swtpm.line", "Log line", base.DEC, nil, nil,
                             "the swtpm log line this frame comes from"),
    run = ProtoField.uint32("swtpm.run", "Run", base.DEC, nil, nil,
                            "the VM start (swtpm process) in the log, from 1"),
    channel = ProtoField.string("swtpm.channel", "Channel"),
    direction = ProtoField.string("swtpm.direction", "Message"),
    tpm_version = ProtoField.string("swtpm.tpm_version", "TPM version"),
    cc = ProtoField.uint32("swtpm.cc", "Command", base.HEX, COMMAND,
                           nil, "the TPM command code (TPM 1.2: ordinal), on requests and responses"),
    ctrl_cmd = ProtoField.uint32("swtpm.ctrl_cmd", "Control command", base.HEX, S.ctrl.CMD),
    request_in = ProtoField.framenum("swtpm.request_in", "Request in", base.NONE, FT_REQUEST),
    response_in = ProtoField.framenum("swtpm.response_in", "Response in", base.NONE, FT_RESPONSE),
    time = ProtoField.relative_time("swtpm.time", "Time since request"),
    continued = ProtoField.bool("swtpm.continued", "Continuation of the response"),
    no_request = ProtoField.bool("swtpm.no_request", "No request before this response"),
}
-- shares the protocol's name: whether a filter names the protocol itself (swtpm/tree.lua)
local A_SWTPM = ProtoField.protocol("swtpm", "SWTPM (swtpm-extcap)")
do
    local list = { A_SWTPM }
    for _, field in pairs(f) do list[#list + 1] = field end
    for _, field in ipairs(notes.fields) do list[#list + 1] = field end
    p_swtpm.fields = list
end
local e_no_request = ProtoExpert.new("swtpm.no_request.expert", "Response without a request before it",
                                     expert.group.SEQUENCE, expert.severity.NOTE)
local e_many = ProtoExpert.new("swtpm.too_many_items", "Too many items in this frame: the rest is not shown",
                               expert.group.UNDECODED, expert.severity.NOTE)
do
    local list = { e_no_request, e_many }
    for _, e in pairs(notes.experts) do list[#list + 1] = e end
    p_swtpm.experts = list
end

-- frame comments (display only: in a first pass without a tree they may be missing)
local ok_comment, fx_comment = pcall(Field.new, "frame.comment")
if not ok_comment then fx_comment = nil end

-- Wireshark's own TPM 2.0 dissector, only when its field names could not be shared
-- (fields.lua): 4.4 registers it as "tpm", 4.0 only on tcp.port 2321-2322 (2322 stays
-- there after a reload of the Lua plugins, which removes this plugin's 2321 entry)
local tcp_port = DissectorTable.get("tcp.port")
local wireshark_tpm
if S.fields.compat == nil then
    local ok, d = pcall(Dissector.get, "tpm")
    if ok and d then wireshark_tpm = d end
    wireshark_tpm = wireshark_tpm or tcp_port:get_dissector(TPM_PORT + 1) or tcp_port:get_dissector(TPM_PORT)
end

-- ------------------------------------------------------------------ init

-- per capture file: Wireshark calls this before it dissects a file afresh
function p_swtpm.init()
    state.reset()
    treemod.reset()
end

-- ------------------------------------------------------------------ port 2321

local NONE, SOME, ALL, GUI = treemod.NONE, treemod.SOME, treemod.ALL, treemod.GUI
-- the fields that share a protocol's name: whether a filter names the protocol itself
local A_TPM2 = S.fields.alias
local A_TPM12 = tpm12.alias
-- (set below, once the dissectors exist) the Dissector objects: whether any field of a
-- protocol is wanted
local D_TPM2, D_TPM12, D_SWTPM
-- the frame the TPM dissector saw last, whether it was its first sight, and whether it
-- added the message's swtpm.* fields itself (the postdissector then skips them)
local last_num, last_first, last_done = -1, false, false

-- pieces of the Info column, made once
local RESPONSE_INFO = {}  -- command -> rc -> "[TPM Response] <command>: <rc text>"

local function seconds_ns(delta)
    if delta < 0 then delta = 0 end
    local whole = math.floor(delta)
    return NSTime.new(whole, math.floor((delta - whole) * 1e9 + 0.5))
end

-- the swtpm.* fields of a TPM or control message (kind: its state bits; cc_done: swtpm.cc is
-- in the tree already)
local function message_fields(ctx, item, num, kind, cc_done)
    local ctrl = state.has(kind, state.CTRL)
    local response = state.has(kind, state.RESPONSE)
    ctx:add_value(item, f.channel, 0, 0, ctrl and "ctrl" or "tpm")
    ctx:add_value(item, f.direction, 0, 0, response and "response" or "request")
    if not ctrl then
        ctx:add_value(item, f.tpm_version, 0, 0, state.has(kind, state.TPM12) and "1.2" or "2.0")
    end
    local code = state.code[num]
    if code ~= nil and not (cc_done and not ctrl) then
        ctx:add_value(item, ctrl and f.ctrl_cmd or f.cc, 0, 0, code)
    end
    local peer = state.peer[num]
    if not response then
        if peer ~= nil then ctx:add_value(item, f.response_in, 0, 0, peer) end
        return
    end
    if state.has(kind, state.NO_REQUEST) then
        ctx:add_value(item, f.no_request, 0, 0, true)
        ctx:expert(e_no_request)
        return
    end
    ctx:add_value(item, f.request_in, 0, 0, peer)
    if ctx:wants(f.time) then
        ctx:add_value(item, f.time, 0, 0, seconds_ns(state.time[num] - state.time[peer]))
    end
    if state.has(kind, state.CONTINUED) then ctx:add_value(item, f.continued, 0, 0, true) end
end

function p_tpm12.dissector(tvb, pinfo, tree)
    local s = tvb:raw()
    local num = pinfo.number
    local kind = state.kind[num] or 0
    local is_request = not state.has(kind, state.RESPONSE)
    local ctx = treemod.begin("tpm12", tree, D_TPM12, A_TPM12, last_num == num and last_first, tvb, s)
    local item = tree:add(p_tpm12, tvb())
    ctx.root = item
    local text, rc = tpm12.dissect(tvb, s, pinfo, item, ctx, is_request, state.code[num])
    if rc ~= nil and state.rc[num] == nil then state.rc[num] = rc end
    pinfo.cols.info = text
    return #s
end

-- The message's swtpm.* fields when only some are wanted (tshark with a filter and no
-- details): the wanted ones of the list, found once per pass (swtpm/tree.lua)
local MESSAGE_FIELDS = { "channel", "direction", "tpm_version", "cc", "ctrl_cmd", "request_in",
                         "response_in", "time", "continued", "no_request" }
local REQUEST_INFO = {}  -- summary -> "[TPM Request] <summary>"
-- Info column texts, made once per distinct text
local INFO = setmetatable({}, { __index = function(t, head)
    local by_len = setmetatable({}, { __index = function(u, n) local v = head .. ", len(" .. n .. ")"; u[n] = v; return v end })
    t[head] = by_len
    return by_len
end })

local tpm12_handle  -- Dissector.get("tpm12"), set below once p_tpm12 has its dissector
local function dissect_tpm(tvb, pinfo, tree)
    local s = tvb:raw()
    local len = #s
    if len == 0 then return 0 end
    local num = pinfo.number
    local kind = state.kind[num]
    local first = kind == nil
    local is_request
    if first then
        local bits = 0
        local dport = pinfo.dst_port
        local sport = pinfo.src_port
        if dport == TPM_PORT then
            is_request = true
        elseif sport == TPM_PORT then
            is_request = false
        else  -- on another port (Decode As): the server is the lower port
            is_request = dport < sport
        end
        if len >= 2 and byte(s, 1) == 0 and tpm12.is_tag(uint(s, 0, 2), is_request) then
            bits = state.TPM12
        end
        if is_request then
            kind = state.note(num, state.key(0, sport, dport), true, len >= 10 and uint(s, 6, 4) or nil,
                              bits, pinfo.rel_ts)
        else
            local tag = len >= 2 and uint(s, 0, 2) or 0
            kind = state.note(num, state.key(0, dport, sport), false, nil, bits, pinfo.rel_ts,
                              tag == 0x8001 or tag == 0x8002)
        end
    else
        is_request = kind % 2 == 0
    end
    last_num, last_first, last_done = num, first, false
    if kind % 4 >= 2 then  -- TPM 1.2
        if tpm12_handle then tpm12_handle:call(tvb, pinfo, tree) end
        return len
    end
    local cols = pinfo.cols
    cols.protocol = "TPM 2.0"
    local pass = treemod.pass("tpm2", tree, D_TPM2, A_TPM2, first)
    local mode = pass.mode
    local ctx, root, shallow
    if GUI or mode ~= NONE then  -- decoded (in the GUI also for the expert items)
        ctx = treemod.context("tpm2", pass, tree, tvb, s)
        root = tree
        if pass.proto then
            root = tree:add(p_tpm2, tvb())
            ctx.root = root
        end
        ctx.compat = S.fields.compat ~= nil and mode ~= NONE
        -- tshark asking only for header fields (tpm.req.cc, tpm2.responseCode...): no walk
        shallow = mode == SOME and not treemod.deep(pass, tree, S.fields.list, tpm2.HEADER_FIELDS)
        if shallow then
            tpm2.header_only(ctx, root, is_request, state.code[num])
            ctx = nil
        end
    end
    if wireshark_tpm then pcall(wireshark_tpm.call, wireshark_tpm, tvb, pinfo, tree) end
    if is_request then
        local summary, nsessions = info.command_info(s)
        if first and nsessions > 0 then state.sessions[num] = nsessions end
        if ctx then
            tpm2.command(ctx, root)
            if ctx.visible then root:append_text(", " .. summary) end
        end
        local head = REQUEST_INFO[summary]
        if head == nil then
            head = "[TPM Request] " .. summary
            REQUEST_INFO[summary] = head
        end
        cols.info = INFO[head][len]
    else
        local cc = state.code[num]
        local req = state.peer[num]
        local key = cc or -1
        if cc and state.kind[req] % 4 >= state.TPM12 then  -- a TPM 2.0's answer to a TPM 1.2 command
            key = -2 - cc
            cc = nil
        end
        local rc, text = info.response_info(s)
        if first and rc then state.rc[num] = rc end
        local by_rc = RESPONSE_INFO[key]
        local head = by_rc and by_rc[rc or -1]
        if head == nil then
            if by_rc == nil then
                by_rc = {}
                RESPONSE_INFO[key] = by_rc
            end
            local name = cc and (CC_NAMES[cc] or format("command 0x%08x", cc))
                or key < -1 and "TPM 1.2 " .. tpm12.name(tpm12.ORD, -2 - key) or "(no request)"
            head = "[TPM Response] " .. name .. ": " .. text
            by_rc[rc or -1] = head
        end
        if rc ~= 0 and rc ~= nil then
            info.failed(ctx or treemod.context("tpm2", pass, tree, tvb, s), cc, text,
                        key < -1 and head:sub(16, -#text - 3) or nil)
        end
        if ctx then
            tpm2.response(ctx, root, cc, req and (state.sessions[req] or 0))
            if ctx.visible then root:append_text(", " .. head:sub(16)) end
            if ctx.overflow then ctx:expert(e_many) end
        end
        cols.info = INFO[head][len]
    end
    -- the message's swtpm.* fields, here when only some are wanted (tshark with a filter):
    -- the postdissector then has nothing left to do for this message
    local spass = treemod.pass("swtpm", tree, D_SWTPM, A_SWTPM, first)
    local smode = spass.mode
    if smode == SOME then
        local want = spass.message
        if want == nil then
            want = {}
            local sctx = treemod.context("swtpm", spass, tree, tvb, nil)
            for _, key in ipairs(MESSAGE_FIELDS) do
                if sctx:wants(f[key]) then want[key] = true; want.any = want.any or key ~= "cc" end
            end
            spass.message = want
        end
        local item = tree
        if spass.proto then item = tree:add(p_swtpm, tvb()) end
        local code = state.code[num]
        if want.cc and code then item:add(f.cc, code) end  -- the usual filter: straight here
        if want.any then
            local sctx = treemod.context("swtpm", spass, tree, tvb, nil)
            sctx.root = item
            message_fields(sctx, item, num, kind, true)
        end
        last_done = true
    elseif smode == NONE then
        last_done = true
    end
    return len
end
p_tpm2.dissector = dissect_tpm
tpm12_handle = Dissector.get("tpm12")

-- ------------------------------------------------------------------ the postdissector

local function marker(s, at)
    -- 02:00:XX:XX:XX:XX -> the u32, else nil
    if #s < at + 6 or s:byte(at + 1) ~= 0x02 or s:byte(at + 2) ~= 0x00 then return nil end
    return uint(s, at + 2, 4)
end

function p_swtpm.dissector(tvb, pinfo, tree)
    -- right after the TPM dissector of this frame (postdissectors run last): its numbers
    local done = last_done
    last_done = false
    local num, first
    if done then
        num, first = last_num, last_first
    else
        num = pinfo.number
        if last_num == num then first = last_first else first = not pinfo.visited end
    end
    local pass = treemod.pass("swtpm", tree, D_SWTPM, A_SWTPM, first)
    local mode = pass.mode
    if mode == NONE and not GUI and not (S.stats.wanted and first) then return end
    if done and mode == SOME then  -- the message's fields are added: line, run, notes?
        local wanted = pass.post
        if wanted == nil then
            local c = treemod.context("swtpm", pass, tree, tvb, nil)
            wanted = c:wants(f.line) or c:wants(f.run)
            for _, nf in ipairs(notes.fields) do wanted = wanted or c:wants(nf) end
            pass.post = wanted
        end
        if not wanted and not (S.stats.wanted and first) then return end
    end
    local ctx = treemod.context("swtpm", pass, tree, tvb, nil)
    local kind = state.kind[num]
    local comments
    if fx_comment and fx_comment() ~= nil then  -- (a table only for a frame with comments)
        comments = notes.comment_texts({ fx_comment() })
        if first and state.explain[num] == nil then state.explain[num] = notes.count_explain(comments) end
    end
    if mode == NONE then
        if comments and GUI then notes.add(ctx, tree, comments) end  -- their expert items
        return
    end
    local item = tree
    if ctx.proto then
        item = tree:add(p_swtpm, tvb())
        ctx.root = item
    end
    local line, run
    if ctx:wants(f.line) or ctx:wants(f.run) then
        local raw = tvb:len() >= 12 and tvb:raw(0, 12) or ""
        line, run = marker(raw, 6), marker(raw, 0)
        if (line == nil or line == 0) and comments then
            line = notes.log_line(comments)
            if line then  -- an older capture: the run from the client port
                local port = math.max(pinfo.src_port, pinfo.dst_port)
                run = port >= CLIENT_PORT_BASE and port - CLIENT_PORT_BASE + 1 or nil
            end
        end
        if line == 0 then line = nil end
        if run == 0 then run = nil end  -- a frame of no run (a notice)
    end
    if line == nil and kind == nil and comments == nil then
        if ctx.visible and item ~= tree then item:set_hidden() end
        return
    end
    if line ~= nil then
        ctx:add_value(item, f.line, 0, 0, line)
        ctx:text(item, ", log line " .. line)
    end
    if run ~= nil then
        ctx:add_value(item, f.run, 0, 0, run)
        ctx:text(item, ", run " .. run)
    end
    if comments then notes.add(ctx, item, comments) end
    if kind ~= nil and not done then message_fields(ctx, item, num, kind) end
end

D_TPM2, D_TPM12, D_SWTPM = Dissector.get("tpm2"), Dissector.get("tpm12"), Dissector.get("swtpm")
register_postdissector(p_swtpm)
tcp_port:add(TPM_PORT, p_tpm2)
tcp_port:add(CTRL_PORT, S.p_ctrl)
