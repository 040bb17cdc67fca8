-- swtpm/fields.lua: the "tpm2" protocol's fields: the generated ones (one per member name
-- of the specification: tpm2.pcrSelectionIn, tpm2.nvIndex, ...), the TPMA_* bits
-- (tpm2.TPMA_SESSION.decrypt), the few this plugin derives (tpm2.pcr, tpm2.handle.type,
-- tpm2.rc.*), and the names of Wireshark's own TPM 2.0 dissector ("tpm", tpm.req.cc,
-- tpm.resp.rc, ...) so that its filters keep working on the frames this plugin decodes.
local token, S = ...
if token ~= "swtpm-extcap" then return end

local T = S.T
local M = {}

local FTYPE = {
    uint8 = ftypes.UINT8, uint16 = ftypes.UINT16, uint32 = ftypes.UINT32, uint64 = ftypes.UINT64,
    int8 = ftypes.INT8, int16 = ftypes.INT16, int32 = ftypes.INT32, int64 = ftypes.INT64,
    bytes = ftypes.BYTES, none = ftypes.NONE,
}
local BASE = { HEX = base.HEX, DEC = base.DEC, NONE = base.NONE }

-- a handle's type, by its top byte (TPM_HT): "NV index", "persistent", ...
M.HANDLE_TYPES = {}
for value, name in pairs(T.constants.TPM_HT) do
    M.HANDLE_TYPES[value] = name:gsub("^TPM_HT_", ""):gsub("_", " "):lower():gsub("^nv", "NV")
        :gsub(" nv$", " NV"):gsub("^pcr$", "PCR"):gsub("hmac", "HMAC"):gsub("^ac$", "AC")
end

-- handles: the permanent ones by name (TPM_RH_*, TPM_RS_PW), the rest by range
local HANDLE_NAMES = {}
for value, name in pairs(T.constants.TPM_RH) do HANDLE_NAMES[#HANDLE_NAMES + 1] = { value, value, name } end
table.sort(HANDLE_NAMES, function(a, b) return a[1] < b[1] end)
do
    local types = {}
    for value in pairs(M.HANDLE_TYPES) do types[#types + 1] = value end
    table.sort(types)
    for _, value in ipairs(types) do
        local first = value * 0x1000000
        HANDLE_NAMES[#HANDLE_NAMES + 1] = { first, first + 0xFFFFFF, M.HANDLE_TYPES[value] }
    end
end
M.HANDLE_NAMES = HANDLE_NAMES

function M.handle_name(value)
    for _, r in ipairs(HANDLE_NAMES) do
        if value >= r[1] and value <= r[2] then
            if r[1] == r[2] then return r[3] end
            return string.format("%s 0x%08x", r[3], value)
        end
    end
    return string.format("0x%08x", value)
end

-- TPM_RC as the specification writes a format 1 code: "TPM_RC_VALUE + TPM_RC_P + TPM_RC_1"
-- (parameter 1), "... + TPM_RC_H + TPM_RC_2" (handle 2), "... + TPM_RC_S + TPM_RC_1" (session 1)
local RC_NAMES = {}
for value, name in pairs(T.constants.TPM_RC) do
    RC_NAMES[value] = name
    if value > 0x80 and value < 0xC0 then
        for n = 1, 15 do
            RC_NAMES[value + 0x40 + n * 0x100] = name .. " + TPM_RC_P + TPM_RC_" .. string.format("%X", n)
        end
        for n = 1, 7 do
            RC_NAMES[value + n * 0x100] = name .. " + TPM_RC_H + TPM_RC_" .. n
            RC_NAMES[value + 0x800 + n * 0x100] = name .. " + TPM_RC_S + TPM_RC_" .. n
        end
    end
end
M.RC_NAMES = RC_NAMES

local function names_of(names)
    if names == "TPM_RC" then return RC_NAMES end
    return names and T.constants[names] or nil
end

local function new_field(spec)
    local abbrev, label, ftype, base_, names, handle = spec[1], spec[2], spec[3], spec[4], spec[5], spec[6]
    if handle then
        return ProtoField.new(label, abbrev, FTYPE[ftype], HANDLE_NAMES, base.RANGE_STRING + base.HEX)
    end
    local vs = names_of(names)
    if ftype == "bytes" or ftype == "none" then
        return ProtoField.new(label, abbrev, FTYPE[ftype])
    end
    if ftype:sub(1, 3) == "int" then base_ = "DEC" end  -- signed numbers show in decimal only
    return ProtoField.new(label, abbrev, FTYPE[ftype], vs, BASE[base_])
end

-- the generated fields, by index (tables.lua's member entries carry the index)
local list = {}
M.by_index = {}
M.by_abbrev = {}
for i, spec in ipairs(T.fields) do
    local f = new_field(spec)
    M.by_index[i] = f
    M.by_abbrev[spec[1]] = f
    list[#list + 1] = f
end

-- TPMA_* bits: tpm2.<TPMA type>.<bit>, under the attribute's item
local SIZE = {}
for name, t in pairs(T.types) do
    if t[1] == "u" and t[5] then SIZE[t[5]] = t[2] end
end
M.bits = {}
for tname, bits in pairs(T.bits) do
    local size = SIZE[tname]
    if size ~= nil and size <= 4 then
        local fields = {}
        for _, b in ipairs(bits) do
            local mask, bname = b[1], b[2]
            local abbrev = "tpm2." .. tname .. "." .. bname
            local f
            local single = mask > 0 and (mask % 2 == 1 or true)
            local v, n = mask, 0
            while v > 0 do n = n + v % 2; v = math.floor(v / 2) end
            if n == 1 then
                f = ProtoField.bool(abbrev, bname, size * 8, nil, mask)
            else
                local vs = (bname == "TPM_NT") and T.constants.TPM_NT or nil
                local ft = ({ ftypes.UINT8, ftypes.UINT16, nil, ftypes.UINT32 })[size]
                f = ProtoField.new(bname, abbrev, ft, vs, vs and base.HEX or base.DEC, mask)
            end
            fields[#fields + 1] = f
            list[#list + 1] = f
        end
        M.bits[tname] = fields
    end
end

-- what this plugin adds of its own
local function own(key, f)
    M[key] = f
    list[#list + 1] = f
end
-- shares the protocol's name: whether a filter names the protocol itself (swtpm/tree.lua)
own("alias", ProtoField.protocol("tpm2", "TPM 2.0 (swtpm-extcap)"))
own("size", ProtoField.uint16("tpm2.size", "size", base.DEC, nil, nil,
                              "the size of a TPM2B (the bytes or structure after it)"))
if M.by_abbrev["tpm2.handle"] then  -- TPML_HANDLE's "handle": the same meaning
    M.handle = M.by_abbrev["tpm2.handle"]
else
    own("handle", ProtoField.new("handle", "tpm2.handle", ftypes.UINT32, HANDLE_NAMES,
                                 base.RANGE_STRING + base.HEX))
end
own("handle_type", ProtoField.uint8("tpm2.handle.type", "handle type", base.HEX, M.HANDLE_TYPES, nil,
                                    "the handle's range: its most significant byte (TPM_HT)"))
own("pcr", ProtoField.uint16("tpm2.pcr", "PCR", base.DEC, nil, nil, "a PCR this selection selects"))
own("encrypted", ProtoField.bytes("tpm2.encrypted", "encrypted parameter", base.NONE,
    "the first parameter, encrypted by a session with decrypt (command) or encrypt (response)"))
own("undecoded", ProtoField.bytes("tpm2.undecoded", "undecoded bytes", base.NONE,
    "bytes the decoder could not read (see the expert info next to them)"))
own("rc_format", ProtoField.uint8("tpm2.rc.format", "format", base.DEC, { [0] = "format 0", [1] = "format 1" }))
own("rc_name", ProtoField.string("tpm2.rc.name", "name"))
own("rc_base", ProtoField.uint32("tpm2.rc.base", "code", base.HEX, T.constants.TPM_RC, nil,
                                 "the response code without its handle, parameter or session number"))
own("rc_handle", ProtoField.uint8("tpm2.rc.handle", "handle number", base.DEC))
own("rc_parameter", ProtoField.uint8("tpm2.rc.parameter", "parameter number", base.DEC))
own("rc_session", ProtoField.uint8("tpm2.rc.session", "session number", base.DEC))
own("rc_warning", ProtoField.bool("tpm2.rc.warning", "warning"))
own("rc_vendor", ProtoField.bool("tpm2.rc.vendor", "vendor defined"))
own("rc_tpm12", ProtoField.bool("tpm2.rc.tpm12", "TPM 1.2 code"))
own("command", ProtoField.uint32("tpm2.command", "command", base.HEX, T.constants.TPM_CC, nil,
                                 "the command this response answers"))

M.list = list

-- Wireshark's own names (packet-tpm20.c), on the same places of the message. A Lua field
-- may share its name with a field of another protocol when the types agree; if a future
-- Wireshark refuses that, the plugin calls Wireshark's dissector instead (swtpm.lua).
local COMPAT = {
    { "proto", "protocol", "tpm", "TPM2.0 Protocol" },
    { "req_header", "none", "tpm.req.header", "TPM2.0 Header" },
    { "req_tag", "uint16", "tpm.req.tag", "Tag", "TPM_ST" },
    { "req_size", "uint32", "tpm.req.size", "Command size" },
    { "req_cc", "uint32", "tpm.req.cc", "Command Code", "TPM_CC" },
    { "req_auth", "none", "tpm.req.auth", "Authorization Area" },
    { "req_hndl", "none", "tpm.req.hndl", "Handle Area" },
    { "resp_params", "none", "tpm.resp.params", "Parameters Area" },
    { "resp_header", "none", "tpm.resp.header", "TPM2.0 Header" },
    { "resp_tag", "uint16", "tpm.resp.tag", "Response Tag", "TPM_ST" },
    { "resp_size", "uint32", "tpm.resp.size", "Response size" },
    { "resp_rc", "uint32", "tpm.resp.rc", "Response rc", "TPM_RC" },
    { "startup_type", "uint16", "tpm.startup.type", "Startup type" },
    { "statup_type", "uint16", "tpm.statup.type", "Startup type" },
    { "autharea_size", "uint32", "tpm.autharea_size", "AUTHAREA SIZE" },
    { "auth_nonce_size", "uint16", "tpm.auth_nonce_size", "AUTH NONCE SIZE" },
    { "auth_nonce", "bytes", "tpm.auth_nonce", "AUTH NONCE" },
    { "session_auth_size", "uint16", "tpm.session_auth_size", "SESSION AUTH SIZE" },
    { "session_auth", "bytes", "tpm.session_auth", "SESSION AUTH" },
    { "resp_param_size", "uint32", "tpm.resp_param_size", "RESP PARAM SIZE" },
    { "enc_secret_size", "uint32", "tpm.enc_secret_size", "ENCRYPTED SECRET SIZE" },
    { "enc_secret", "bytes", "tpm.enc_secret", "ENCRYPTED SECRET" },
    { "session_type", "uint8", "tpm.session_type", "SESSION TYPE" },
    { "sym_alg", "uint16", "tpm.sym_alg", "SYM ALG" },
    { "sym_alg_mode", "uint16", "tpm.sym_alg_mode", "SYM ALG MODE" },
    { "sym_alg_keybits", "uint16", "tpm.sym_alg_keybits", "SYM ALG KEYBITS" },
    { "alg_hash", "uint16", "tpm.alg_hash", "ALG HASH" },
    { "private_size", "uint16", "tpm.private_size", "TPM PRIVATE SIZE" },
    { "private", "bytes", "tpm.private", "TPM PRIVATE" },
    { "public_size", "uint16", "tpm.public_size", "TPM PUBLIC SIZE" },
    { "public", "bytes", "tpm.public", "TPM PUBLIC" },
    { "name_size", "uint16", "tpm.name_size", "TPM NAME SIZE" },
    { "name", "bytes", "tpm.name", "TPM NAME" },
    { "sensitive_create_size", "uint16", "tpm.sensitive_create_size", "TPM SENSITIVE CREATE SIZE" },
    { "sensitive_create", "bytes", "tpm.sensitive_create", "TPM SENSITIVE CREATE" },
    { "template_size", "uint16", "tpm.template_size", "TPM TEMPLATE SIZE" },
    { "template", "bytes", "tpm.template", "TPM TEMPLATE" },
    { "data_size", "uint16", "tpm.data_size", "TPM DATA SIZE" },
    { "data", "bytes", "tpm.data", "TPM DATA" },
    { "creation_data_size", "uint16", "tpm.creation_data_size", "TPM CREATION DATA SIZE" },
    { "creation_data", "bytes", "tpm.creation_data", "TPM CREATION DATA" },
    { "digest_size", "uint16", "tpm.digest_size", "TPM DIGEST SIZE" },
    { "digest", "bytes", "tpm.digest", "TPM DIGEST" },
    { "params", "bytes", "tpm.PARAMS", "RESPONSE PARAMS" },
}
-- the handle fields of Wireshark's dissector, by the TPMI type it gave them
local COMPAT_HANDLES = { "TPMI_DH_OBJECT", "TPMI_DH_ENTITY", "TPMI_DH_CONTEXT", "TPMI_DH_PARENT",
    "TPMI_DH_PCR", "TPMI_SH_AUTH_SESSION", "TPMI_RH_ACT", "TPMI_RH_HIERARCHY", "TPMI_RH_PROVISION",
    "TPMI_RH_PLATFORM", "TPMI_RH_CLEAR", "TPMI_RH_HIERARCHY_AUTH", "TPMI_RH_NV_AUTH",
    "TPMI_RH_NV_INDEX", "TPMI_RH_LOCKOUT", "TPM_HANDLE", "TPMI_RH_ENDORSEMENT" }
local COMPAT_BITS = { { "cont", "SESSION_CONTINUESESSION", 0x01 }, { "auditex", "SESSION_AUDITEXCLUSIVE", 0x02 },
    { "auditreset", "SESSION_AUDITRESET", 0x04 }, { "res", "SESSION_RESERVED", 0x18 },
    { "decrypt", "SESSION_DECRYPT", 0x20 }, { "encrypt", "SESSION_ENCRYPT", 0x40 },
    { "audit", "SESSION_AUDIT", 0x80 } }

local function make_compat()
    local c = { handle = {}, attribs = {} }
    local fields = {}
    for _, e in ipairs(COMPAT) do
        local key, ftype, abbrev, label, names = e[1], e[2], e[3], e[4], e[5]
        local f
        if ftype == "protocol" then
            f = ProtoField.protocol(abbrev, label)
        elseif ftype == "bytes" or ftype == "none" then
            f = ProtoField.new(label, abbrev, FTYPE[ftype])
        else  -- sizes in decimal, the rest in hex, as Wireshark's own fields
            local b = (abbrev:find("size", 1, true) and abbrev ~= "tpm.resp.size" or abbrev:find("keybits", 1, true))
                and base.DEC or base.HEX
            f = ProtoField.new(label, abbrev, FTYPE[ftype], names_of(names), b)
        end
        c[key] = f
        fields[#fields + 1] = f
    end
    for _, tname in ipairs(COMPAT_HANDLES) do
        local f = ProtoField.uint32("tpm.handle." .. tname, tname, base.HEX)
        c.handle[tname] = f
        fields[#fields + 1] = f
    end
    for _, b in ipairs(COMPAT_BITS) do
        local f = ProtoField.bool("tpm.auth_attribs_" .. b[1], b[2], 8, nil, b[3])
        c.attribs[#c.attribs + 1] = f
        fields[#fields + 1] = f
    end
    return c, fields
end

-- Wireshark's "tpm" fields must exist to be shared (its TPM 2.0 dissector is built in)
local ok, compat, compat_fields = pcall(make_compat)
if ok then
    M.compat = compat
    for _, f in ipairs(compat_fields) do list[#list + 1] = f end
else
    M.compat = nil
    M.compat_error = tostring(compat)
end

return M
