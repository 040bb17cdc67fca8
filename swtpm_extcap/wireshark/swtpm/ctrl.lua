-- swtpm/ctrl.lua: swtpm's control channel (TCP port 2323; tpm_ioctl.h CMD_*): every command by
-- name with its fields, each response decoded by the command it answers.
--
-- Numbers and layouts: swtpm's include/swtpm/tpm_ioctl.h (CMD_*, ptm_* structs, PTM_CAP_*) and
-- src/swtpm/ctrlchannel.c (GET_CAPABILITY answers a bare u64; errors are a bare u32 result).
-- The control channel answers with TPM 1.2 return codes (TPM_BAD_PARAMETER, TPM_BAD_ORDINAL,
-- TPM_IOERROR, ...) and passes on the TPM 2.0 codes of CMD_INIT.
local token, S = ...
if token ~= "swtpm-extcap" then return end

local M = {}
local state = S.state
local p_ctrl = S.p_ctrl
local CTRL_PORT = S.CTRL_PORT

-- tpm_ioctl.h, "Commands used by the non-CUSE TPMs" (big-endian u32 on the wire)
local CTRL_CMD = {
    [0x01] = "CMD_GET_CAPABILITY", [0x02] = "CMD_INIT", [0x03] = "CMD_SHUTDOWN",
    [0x04] = "CMD_GET_TPMESTABLISHED", [0x05] = "CMD_SET_LOCALITY", [0x06] = "CMD_HASH_START",
    [0x07] = "CMD_HASH_DATA", [0x08] = "CMD_HASH_END", [0x09] = "CMD_CANCEL_TPM_CMD",
    [0x0a] = "CMD_STORE_VOLATILE", [0x0b] = "CMD_RESET_TPMESTABLISHED",
    [0x0c] = "CMD_GET_STATEBLOB", [0x0d] = "CMD_SET_STATEBLOB", [0x0e] = "CMD_STOP",
    [0x0f] = "CMD_GET_CONFIG", [0x10] = "CMD_SET_DATAFD", [0x11] = "CMD_SET_BUFFERSIZE",
    [0x12] = "CMD_GET_INFO", [0x13] = "CMD_LOCK_STORAGE",
}

-- PTM_CAP_* (the u64 answer of CMD_GET_CAPABILITY); all below bit 32
local PTM_CAPS = {
    {0x00001, "init", "INIT"}, {0x00002, "shutdown", "SHUTDOWN"},
    {0x00004, "get_tpmestablished", "GET_TPMESTABLISHED"},
    {0x00008, "set_locality", "SET_LOCALITY"}, {0x00010, "hashing", "HASHING"},
    {0x00020, "cancel_tpm_cmd", "CANCEL_TPM_CMD"}, {0x00040, "store_volatile", "STORE_VOLATILE"},
    {0x00080, "reset_tpmestablished", "RESET_TPMESTABLISHED"},
    {0x00100, "get_stateblob", "GET_STATEBLOB"}, {0x00200, "set_stateblob", "SET_STATEBLOB"},
    {0x00400, "stop", "STOP"}, {0x00800, "get_config", "GET_CONFIG"},
    {0x01000, "set_datafd", "SET_DATAFD"}, {0x02000, "set_buffersize", "SET_BUFFERSIZE"},
    {0x04000, "get_info", "GET_INFO"}, {0x08000, "send_command_header", "SEND_COMMAND_HEADER"},
    {0x10000, "lock_storage", "LOCK_STORAGE"},
}

local BLOB_TYPE = { [1] = "PTM_BLOB_TYPE_PERMANENT", [2] = "PTM_BLOB_TYPE_VOLATILE",
                    [3] = "PTM_BLOB_TYPE_SAVESTATE" }

-- the control channel's result: TPM 1.2 codes, and the TPM 2.0 codes CMD_INIT passes on
local CTRL_RESULT = {}
for code, name in pairs(S.tpm12.RC) do CTRL_RESULT[code] = name end
CTRL_RESULT[0x100] = "TPM_RC_INITIALIZE"
CTRL_RESULT[0x101] = "TPM_RC_FAILURE"
M.CMD, M.RESULT = CTRL_CMD, CTRL_RESULT

local c = {
    cmd = ProtoField.uint32("swtpm.ctrl.cmd", "Command", base.HEX, CTRL_CMD),
    result = ProtoField.uint32("swtpm.ctrl.result", "Result", base.HEX, CTRL_RESULT),
    init_flags = ProtoField.uint32("swtpm.ctrl.init_flags", "Init flags", base.HEX),
    init_delete_volatile = ProtoField.bool("swtpm.ctrl.init_flags.delete_volatile",
        "PTM_INIT_FLAG_DELETE_VOLATILE", 32, nil, 0x1),
    locality = ProtoField.uint8("swtpm.ctrl.locality", "Locality", base.DEC),
    caps = ProtoField.uint64("swtpm.ctrl.caps", "Capabilities", base.HEX),
    established = ProtoField.uint8("swtpm.ctrl.tpm_established", "TPM established bit", base.DEC),
    hash_length = ProtoField.uint32("swtpm.ctrl.hash.length", "Hash data length", base.DEC),
    hash_data = ProtoField.bytes("swtpm.ctrl.hash.data", "Hash data"),
    state_flags = ProtoField.uint32("swtpm.ctrl.state_flags", "State flags", base.HEX),
    state_decrypted = ProtoField.bool("swtpm.ctrl.state_flags.decrypted",
        "PTM_STATE_FLAG_DECRYPTED", 32, nil, 0x1),
    state_encrypted = ProtoField.bool("swtpm.ctrl.state_flags.encrypted",
        "PTM_STATE_FLAG_ENCRYPTED", 32, nil, 0x2),
    blob_type = ProtoField.uint32("swtpm.ctrl.blob_type", "Blob type", base.DEC, BLOB_TYPE),
    offset = ProtoField.uint32("swtpm.ctrl.offset", "Offset", base.DEC),
    totlength = ProtoField.uint32("swtpm.ctrl.totlength", "Total length", base.DEC),
    length = ProtoField.uint32("swtpm.ctrl.length", "Length", base.DEC),
    blob = ProtoField.bytes("swtpm.ctrl.blob", "State blob data"),
    config_flags = ProtoField.uint32("swtpm.ctrl.config_flags", "Config flags", base.HEX),
    config_file_key = ProtoField.bool("swtpm.ctrl.config_flags.file_key",
        "PTM_CONFIG_FLAG_FILE_KEY", 32, nil, 0x1),
    config_migration_key = ProtoField.bool("swtpm.ctrl.config_flags.migration_key",
        "PTM_CONFIG_FLAG_MIGRATION_KEY", 32, nil, 0x2),
    buffersize = ProtoField.uint32("swtpm.ctrl.buffersize", "Buffer size", base.DEC),
    minsize = ProtoField.uint32("swtpm.ctrl.minsize", "Minimum buffer size", base.DEC),
    maxsize = ProtoField.uint32("swtpm.ctrl.maxsize", "Maximum buffer size", base.DEC),
    info_flags = ProtoField.uint64("swtpm.ctrl.info_flags", "Info flags", base.HEX),
    info = ProtoField.string("swtpm.ctrl.info", "Info"),
    pad = ProtoField.uint32("swtpm.ctrl.pad", "Padding", base.HEX),
    retries = ProtoField.uint32("swtpm.ctrl.retries", "Retries", base.DEC),
    data = ProtoField.bytes("swtpm.ctrl.data", "Data"),
}
local cap_fields = {}
for _, cap in ipairs(PTM_CAPS) do
    local field = ProtoField.bool("swtpm.ctrl.caps." .. cap[2], "PTM_CAP_" .. cap[3], 32, nil, cap[1])
    cap_fields[#cap_fields + 1] = field
    c["cap_" .. cap[2]] = field
end
p_ctrl.fields = c

local e_failed = ProtoExpert.new("swtpm.ctrl.failed", "The command failed",
                                 expert.group.RESPONSE_CODE, expert.severity.NOTE)
local e_short = ProtoExpert.new("swtpm.ctrl.short", "Message shorter than its layout",
                                expert.group.MALFORMED, expert.severity.WARN)
p_ctrl.experts = { e_failed, e_short }

local function flag_tree(tree, field, tvb, offset, subfields)
    local item = tree:add(field, tvb(offset, 4))
    for _, sub in ipairs(subfields) do item:add(sub, tvb(offset, 4)) end
    return item
end

local function ctrl_request(tvb, tree, cmd)
    local len = tvb:len()
    local body = len - 4
    local summary = ""
    local function need(n)
        if body < n then tree:add_proto_expert_info(e_short); return false end
        return true
    end
    if cmd == 0x02 then  -- INIT: u32 init_flags
        if need(4) then
            local flags = tvb(4, 4):uint()
            flag_tree(tree, c.init_flags, tvb, 4, { c.init_delete_volatile })
            summary = string.format(" flags 0x%x%s", flags, flags % 2 == 1 and " (delete volatile)" or "")
        end
    elseif cmd == 0x05 or cmd == 0x0b then  -- SET_LOCALITY, RESET_TPMESTABLISHED: u8 loc
        if need(1) then
            tree:add(c.locality, tvb(4, 1))
            summary = " locality " .. tvb(4, 1):uint()
        end
    elseif cmd == 0x07 then  -- HASH_DATA: u32 length, data
        if need(4) then
            tree:add(c.hash_length, tvb(4, 4))
            if body > 4 then tree:add(c.hash_data, tvb(8)) end
            summary = " length " .. tvb(4, 4):uint()
        end
    elseif cmd == 0x0c then  -- GET_STATEBLOB: u32 state_flags, type, offset
        if need(12) then
            flag_tree(tree, c.state_flags, tvb, 4, { c.state_decrypted })
            tree:add(c.blob_type, tvb(8, 4))
            tree:add(c.offset, tvb(12, 4))
            summary = " " .. (BLOB_TYPE[tvb(8, 4):uint()] or ("type " .. tvb(8, 4):uint()))
                      .. " offset " .. tvb(12, 4):uint()
        end
    elseif cmd == 0x0d then  -- SET_STATEBLOB: u32 state_flags, type, length, data
        if need(12) then
            flag_tree(tree, c.state_flags, tvb, 4, { c.state_encrypted })
            tree:add(c.blob_type, tvb(8, 4))
            tree:add(c.length, tvb(12, 4))
            if body > 12 then tree:add(c.blob, tvb(16)) end
            summary = " " .. (BLOB_TYPE[tvb(8, 4):uint()] or ("type " .. tvb(8, 4):uint()))
                      .. " length " .. tvb(12, 4):uint()
        end
    elseif cmd == 0x11 then  -- SET_BUFFERSIZE: u32 buffersize (0 = query)
        if need(4) then
            tree:add(c.buffersize, tvb(4, 4))
            local size = tvb(4, 4):uint()
            summary = size == 0 and " (query)" or (" " .. size)
        end
    elseif cmd == 0x12 then  -- GET_INFO: u64 flags, u32 offset, u32 pad
        if need(16) then
            tree:add(c.info_flags, tvb(4, 8))
            tree:add(c.offset, tvb(12, 4))
            tree:add(c.pad, tvb(16, 4))
            summary = string.format(" flags 0x%x", tvb(8, 4):uint())
        end
    elseif cmd == 0x13 then  -- LOCK_STORAGE: u32 retries
        if need(4) then
            tree:add(c.retries, tvb(4, 4))
            summary = " retries " .. tvb(4, 4):uint()
        end
    elseif body > 0 then
        tree:add(c.data, tvb(4))
    end
    return summary
end

local function ctrl_response(tvb, tree, cmd)
    local len = tvb:len()
    local summary = ""
    if cmd == 0x01 and len == 8 then  -- GET_CAPABILITY: a bare u64, no result
        local caps = tree:add(c.caps, tvb(0, 8))
        for _, field in ipairs(cap_fields) do caps:add(field, tvb(4, 4)) end
        return string.format(" caps 0x%x", tvb(4, 4):uint()), nil
    end
    if len < 4 then
        tree:add_proto_expert_info(e_short)
        return " (short)", nil
    end
    local result = tvb(0, 4):uint()
    local item = tree:add(c.result, tvb(0, 4))
    if result ~= 0 then item:add_proto_expert_info(e_failed) end
    summary = " " .. (CTRL_RESULT[result] or string.format("result 0x%x", result))
    if len == 4 then return summary, result end  -- a bare result: also every error
    if cmd == 0x04 then  -- GET_TPMESTABLISHED: result, u8 bit (+ padding)
        tree:add(c.established, tvb(4, 1))
        summary = summary .. ", established " .. tvb(4, 1):uint()
    elseif cmd == 0x0c and len >= 16 then  -- GET_STATEBLOB: result, flags, totlength, length
        flag_tree(tree, c.state_flags, tvb, 4, { c.state_encrypted })
        tree:add(c.totlength, tvb(8, 4))
        tree:add(c.length, tvb(12, 4))
        if len > 16 then tree:add(c.blob, tvb(16)) end
        summary = summary .. ", " .. tvb(8, 4):uint() .. " bytes"
    elseif cmd == 0x0f and len >= 8 then  -- GET_CONFIG: result, flags
        flag_tree(tree, c.config_flags, tvb, 4, { c.config_file_key, c.config_migration_key })
        summary = summary .. string.format(", flags 0x%x", tvb(4, 4):uint())
    elseif cmd == 0x11 and len >= 16 then  -- SET_BUFFERSIZE: result, size, min, max
        tree:add(c.buffersize, tvb(4, 4))
        tree:add(c.minsize, tvb(8, 4))
        tree:add(c.maxsize, tvb(12, 4))
        summary = summary .. string.format(", buffer %d (%d..%d)", tvb(4, 4):uint(),
                                           tvb(8, 4):uint(), tvb(12, 4):uint())
    elseif cmd == 0x12 and len >= 12 then  -- GET_INFO: result, totlength, length, string
        tree:add(c.totlength, tvb(4, 4))
        tree:add(c.length, tvb(8, 4))
        if len > 12 then tree:add(c.info, tvb(12)) end
    else
        tree:add(c.data, tvb(4))
    end
    return summary, result
end


function p_ctrl.dissector(tvb, pinfo, tree)
    local len = tvb:len()
    if len == 0 then return 0 end
    local num = pinfo.number
    local is_request = pinfo.dst_port == CTRL_PORT
    local cmd
    if is_request and len >= 4 then cmd = tvb(0, 4):uint() end
    local kind = state.kind[num]
    if kind == nil then
        local cport, sport = pinfo.src_port, pinfo.dst_port
        if not is_request then cport, sport = sport, cport end
        kind = state.note(num, state.key(1, cport, sport), is_request, cmd, state.CTRL, pinfo.rel_ts)
    end
    pinfo.cols.protocol:set("SWTPM ctrl")
    local item = tree:add(p_ctrl, tvb())
    if is_request then
        if cmd == nil then
            item:add_proto_expert_info(e_short)
            pinfo.cols.info:set("Control command (short)")
            return len
        end
        item:add(c.cmd, tvb(0, 4))
        local name = CTRL_CMD[cmd] or string.format("unknown command 0x%x", cmd)
        local summary = ctrl_request(tvb, item, cmd)
        item:append_text(", " .. name .. summary)
        pinfo.cols.info:set(name .. summary)
        return len
    end
    local code = state.code[num]
    local name = code and (CTRL_CMD[code] or string.format("unknown command 0x%x", code))
                 or "unknown command"
    if code ~= nil then item:add(c.cmd, tvb(0, 0), code):set_generated() end
    if state.has(kind, state.CONTINUED) then
        item:add(c.blob, tvb())
        item:append_text(", " .. name .. " response continued")
        pinfo.cols.info:set(string.format("%s response continued: %d bytes", name, len))
        return len
    end
    local summary, result = ctrl_response(tvb, item, code)
    if result ~= nil and state.rc[num] == nil then state.rc[num] = result end
    item:append_text(", " .. name .. " response" .. summary)
    pinfo.cols.info:set(name .. " response:" .. summary)
    return len
end

return M
