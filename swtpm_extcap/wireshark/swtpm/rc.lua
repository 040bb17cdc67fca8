-- swtpm/rc.lua: TPM 2.0 response codes, decoded as Part 2's TPM_RC table says.
--
--   bit 7 (F) set: format 1, an error about one handle, parameter or session:
--       bits 5..0 the error (RC_FMT1 + E: TPM_RC_VALUE, TPM_RC_POLICY_FAIL, ...);
--       bit 6 (P) set: the parameter number is bits 11..8;
--       else bits 11..8 (N): 0x8..0xF session N - 8, 0x1..0x7 handle N, 0 none said.
--   bit 7 clear: format 0:
--       bit 8 (V) clear: a TPM 1.2 code (the TPM 2.0 answers an old command this way);
--       bit 10 (T) set: vendor defined;
--       bit 11 (S) set: a warning (RC_WARN + E: TPM_RC_RETRY, TPM_RC_YIELDED, ...);
--       else an error (RC_VER1 + E: TPM_RC_INITIALIZE, TPM_RC_FAILURE, ...).
-- Names come from the generated TPM_RC constants (tables.lua).
local token, S = ...
if token ~= "swtpm-extcap" then return end

local NAMES = S.T.constants.TPM_RC
local floor, format = math.floor, string.format

local M = {}

M.SUCCESS = NAMES[0] or "TPM_RC_SUCCESS"

-- rc -> {name=, base=, format=0|1, warning=bool, vendor=bool, tpm12=bool,
--        handle=n|nil, parameter=n|nil, session=n|nil}
function M.decode(rc)
    local d = { format = 0 }
    if rc == 0 then
        d.name, d.base = NAMES[0] or "TPM_RC_SUCCESS", 0
        return d
    end
    local low = rc % 0x100
    local n = floor(rc / 0x100) % 0x10
    if low >= 0x80 then
        d.format = 1
        d.base = 0x80 + low % 0x40
        d.name = NAMES[d.base]
        if low % 0x80 >= 0x40 then
            d.parameter = n
        elseif n >= 8 then
            d.session = n - 8
        elseif n > 0 then
            d.handle = n
        end
    elseif n % 2 == 0 then  -- V clear
        d.tpm12 = true
        d.base = rc
    elseif floor(n / 4) % 2 == 1 then  -- T set
        d.vendor = true
        d.base = rc
    elseif n >= 8 then  -- S set
        d.warning = true
        d.base = 0x900 + low
        d.name = NAMES[d.base]
    else
        d.base = 0x100 + low
        d.name = NAMES[d.base]
    end
    if floor(rc / 0x1000) ~= 0 then
        d.name = nil  -- bits above 11 are never set in a TPM 2.0 response code
        d.base = rc
    end
    return d
end

-- "TPM_RC_POLICY_FAIL (session 1)", "TPM 1.2 TPM_BADTAG", "vendor code 0x..."
function M.text(d, rc, tpm12_names)
    local name = d.name
    if d.tpm12 then
        name = "TPM 1.2 " .. ((tpm12_names and tpm12_names[rc]) or format("code 0x%x", rc))
    elseif d.vendor then
        name = format("vendor code 0x%03x", rc)
    elseif name == nil then
        name = format("unknown code 0x%x", rc)
    end
    if d.handle then return name .. " (handle " .. d.handle .. ")" end
    if d.parameter then return name .. " (parameter " .. d.parameter .. ")" end
    if d.session then return name .. " (session " .. d.session .. ")" end
    return name
end

return M
