-- swtpm/tpm12.lua: TPM 1.2 messages on port 2321 (tag 0x00C1..0x00C6): header, ordinal or
-- return code by name, the parameters as bytes. Wireshark's own TPM dissector is TPM 2.0 only.
-- Ordinals and return codes: TPM 1.2 Main Specification Part 2 (and TSC_ORD_* of the TSC).
local token, S = ...
if token ~= "swtpm-extcap" then return end

local M = {}

-- TPM 1.2 return codes (TPM_BASE + n; TPM_NON_FATAL = 0x800 + n). The control channel
-- answers with these too (TPM_BAD_PARAMETER for bad input, TPM_BAD_ORDINAL when the TPM
-- is not running or an unknown command, TPM_IOERROR, TPM_SIZE, TPM_BAD_LOCALITY).
local TPM12_RC = {
    [0x00] = "TPM_SUCCESS", [0x01] = "TPM_AUTHFAIL", [0x02] = "TPM_BADINDEX",
    [0x03] = "TPM_BAD_PARAMETER", [0x04] = "TPM_AUDITFAILURE", [0x05] = "TPM_CLEAR_DISABLED",
    [0x06] = "TPM_DEACTIVATED", [0x07] = "TPM_DISABLED", [0x08] = "TPM_DISABLED_CMD",
    [0x09] = "TPM_FAIL", [0x0a] = "TPM_BAD_ORDINAL", [0x0b] = "TPM_INSTALL_DISABLED",
    [0x0c] = "TPM_INVALID_KEYHANDLE", [0x0d] = "TPM_KEYNOTFOUND", [0x0e] = "TPM_INAPPROPRIATE_ENC",
    [0x0f] = "TPM_MIGRATEFAIL", [0x10] = "TPM_INVALID_PCR_INFO", [0x11] = "TPM_NOSPACE",
    [0x12] = "TPM_NOSRK", [0x13] = "TPM_NOTSEALED_BLOB", [0x14] = "TPM_OWNER_SET",
    [0x15] = "TPM_RESOURCES", [0x16] = "TPM_SHORTRANDOM", [0x17] = "TPM_SIZE",
    [0x18] = "TPM_WRONGPCRVAL", [0x19] = "TPM_BAD_PARAM_SIZE", [0x1a] = "TPM_SHA_THREAD",
    [0x1b] = "TPM_SHA_ERROR", [0x1c] = "TPM_FAILEDSELFTEST", [0x1d] = "TPM_AUTH2FAIL",
    [0x1e] = "TPM_BADTAG", [0x1f] = "TPM_IOERROR", [0x20] = "TPM_ENCRYPT_ERROR",
    [0x21] = "TPM_DECRYPT_ERROR", [0x22] = "TPM_INVALID_AUTHHANDLE", [0x23] = "TPM_NO_ENDORSEMENT",
    [0x24] = "TPM_INVALID_KEYUSAGE", [0x25] = "TPM_WRONG_ENTITYTYPE", [0x26] = "TPM_INVALID_POSTINIT",
    [0x27] = "TPM_INAPPROPRIATE_SIG", [0x28] = "TPM_BAD_KEY_PROPERTY", [0x29] = "TPM_BAD_MIGRATION",
    [0x2a] = "TPM_BAD_SCHEME", [0x2b] = "TPM_BAD_DATASIZE", [0x2c] = "TPM_BAD_MODE",
    [0x2d] = "TPM_BAD_PRESENCE", [0x2e] = "TPM_BAD_VERSION", [0x2f] = "TPM_NO_WRAP_TRANSPORT",
    [0x30] = "TPM_AUDITFAIL_UNSUCCESSFUL", [0x31] = "TPM_AUDITFAIL_SUCCESSFUL",
    [0x32] = "TPM_NOTRESETABLE", [0x33] = "TPM_NOTLOCAL", [0x34] = "TPM_BAD_TYPE",
    [0x35] = "TPM_INVALID_RESOURCE", [0x36] = "TPM_NOTFIPS", [0x37] = "TPM_INVALID_FAMILY",
    [0x38] = "TPM_NO_NV_PERMISSION", [0x39] = "TPM_REQUIRES_SIGN", [0x3a] = "TPM_KEY_NOTSUPPORTED",
    [0x3b] = "TPM_AUTH_CONFLICT", [0x3c] = "TPM_AREA_LOCKED", [0x3d] = "TPM_BAD_LOCALITY",
    [0x3e] = "TPM_READ_ONLY", [0x3f] = "TPM_PER_NOWRITE", [0x40] = "TPM_FAMILYCOUNT",
    [0x41] = "TPM_WRITE_LOCKED", [0x42] = "TPM_BAD_ATTRIBUTES", [0x43] = "TPM_INVALID_STRUCTURE",
    [0x44] = "TPM_KEY_OWNER_CONTROL", [0x45] = "TPM_BAD_COUNTER", [0x46] = "TPM_NOT_FULLWRITE",
    [0x47] = "TPM_CONTEXT_GAP", [0x48] = "TPM_MAXNVWRITES", [0x49] = "TPM_NOOPERATOR",
    [0x4a] = "TPM_RESOURCEMISSING", [0x4b] = "TPM_DELEGATE_LOCK", [0x4c] = "TPM_DELEGATE_FAMILY",
    [0x4d] = "TPM_DELEGATE_ADMIN", [0x4e] = "TPM_TRANSPORT_NOTEXCLUSIVE", [0x4f] = "TPM_OWNER_CONTROL",
    [0x50] = "TPM_DAA_RESOURCES", [0x51] = "TPM_DAA_INPUT_DATA0", [0x52] = "TPM_DAA_INPUT_DATA1",
    [0x53] = "TPM_DAA_ISSUER_SETTINGS", [0x54] = "TPM_DAA_TPM_SETTINGS", [0x55] = "TPM_DAA_STAGE",
    [0x56] = "TPM_DAA_ISSUER_VALIDITY", [0x57] = "TPM_DAA_WRONG_W", [0x58] = "TPM_BAD_HANDLE",
    [0x59] = "TPM_BAD_DELEGATE", [0x5a] = "TPM_BADCONTEXT", [0x5b] = "TPM_TOOMANYCONTEXTS",
    [0x5c] = "TPM_MA_TICKET_SIGNATURE", [0x5d] = "TPM_MA_DESTINATION", [0x5e] = "TPM_MA_SOURCE",
    [0x5f] = "TPM_MA_AUTHORITY", [0x61] = "TPM_PERMANENTEK", [0x62] = "TPM_BAD_SIGNATURE",
    [0x63] = "TPM_NOCONTEXTSPACE",
    [0x800] = "TPM_RETRY", [0x801] = "TPM_NEEDS_SELFTEST", [0x802] = "TPM_DOING_SELFTEST",
    [0x803] = "TPM_DEFEND_LOCK_RUNNING",
}

-- TPM 1.2 command ordinals (TPM_ORD_*, TSC_ORD_*)
local TPM12_ORD = {
    [0x0a] = "TPM_ORD_OIAP", [0x0b] = "TPM_ORD_OSAP", [0x0c] = "TPM_ORD_ChangeAuth",
    [0x0d] = "TPM_ORD_TakeOwnership", [0x0e] = "TPM_ORD_ChangeAuthAsymStart",
    [0x0f] = "TPM_ORD_ChangeAuthAsymFinish", [0x10] = "TPM_ORD_ChangeAuthOwner",
    [0x11] = "TPM_ORD_DSAP", [0x12] = "TPM_ORD_CMK_CreateTicket", [0x13] = "TPM_ORD_CMK_CreateKey",
    [0x14] = "TPM_ORD_Extend", [0x15] = "TPM_ORD_PcrRead", [0x16] = "TPM_ORD_Quote",
    [0x17] = "TPM_ORD_Seal", [0x18] = "TPM_ORD_Unseal", [0x19] = "TPM_ORD_DirWriteAuth",
    [0x1a] = "TPM_ORD_DirRead", [0x1b] = "TPM_ORD_CMK_CreateBlob", [0x1c] = "TPM_ORD_CMK_SetRestrictions",
    [0x1d] = "TPM_ORD_CMK_ApproveMA", [0x1e] = "TPM_ORD_UnBind", [0x1f] = "TPM_ORD_CreateWrapKey",
    [0x20] = "TPM_ORD_LoadKey", [0x21] = "TPM_ORD_GetPubKey", [0x22] = "TPM_ORD_EvictKey",
    [0x23] = "TPM_ORD_KeyControlOwner", [0x24] = "TPM_ORD_CMK_ConvertMigration",
    [0x25] = "TPM_ORD_MigrateKey", [0x28] = "TPM_ORD_CreateMigrationBlob", [0x29] = "TPM_ORD_DAA_Join",
    [0x2a] = "TPM_ORD_ConvertMigrationBlob", [0x2b] = "TPM_ORD_AuthorizeMigrationKey",
    [0x2c] = "TPM_ORD_CreateMaintenanceArchive", [0x2d] = "TPM_ORD_LoadMaintenanceArchive",
    [0x2e] = "TPM_ORD_KillMaintenanceFeature", [0x2f] = "TPM_ORD_LoadManuMaintPub",
    [0x30] = "TPM_ORD_ReadManuMaintPub", [0x31] = "TPM_ORD_DAA_Sign", [0x32] = "TPM_ORD_CertifyKey",
    [0x33] = "TPM_ORD_CertifyKey2", [0x3c] = "TPM_ORD_Sign", [0x3d] = "TPM_ORD_Sealx",
    [0x3e] = "TPM_ORD_Quote2", [0x3f] = "TPM_ORD_SetCapability", [0x40] = "TPM_ORD_ResetLockValue",
    [0x41] = "TPM_ORD_LoadKey2", [0x46] = "TPM_ORD_GetRandom", [0x47] = "TPM_ORD_StirRandom",
    [0x50] = "TPM_ORD_SelfTestFull", [0x52] = "TPM_ORD_CertifySelfTest",
    [0x53] = "TPM_ORD_ContinueSelfTest", [0x54] = "TPM_ORD_GetTestResult", [0x5a] = "TPM_ORD_Reset",
    [0x5b] = "TPM_ORD_OwnerClear", [0x5c] = "TPM_ORD_DisableOwnerClear", [0x5d] = "TPM_ORD_ForceClear",
    [0x5e] = "TPM_ORD_DisableForceClear", [0x64] = "TPM_ORD_GetCapabilitySigned",
    [0x65] = "TPM_ORD_GetCapability", [0x66] = "TPM_ORD_GetCapabilityOwner",
    [0x6e] = "TPM_ORD_OwnerSetDisable", [0x6f] = "TPM_ORD_PhysicalEnable",
    [0x70] = "TPM_ORD_PhysicalDisable", [0x71] = "TPM_ORD_SetOwnerInstall",
    [0x72] = "TPM_ORD_PhysicalSetDeactivated", [0x73] = "TPM_ORD_SetTempDeactivated",
    [0x74] = "TPM_ORD_SetOperatorAuth", [0x75] = "TPM_ORD_SetOwnerPointer",
    [0x78] = "TPM_ORD_CreateEndorsementKeyPair", [0x79] = "TPM_ORD_MakeIdentity",
    [0x7a] = "TPM_ORD_ActivateIdentity", [0x7c] = "TPM_ORD_ReadPubek", [0x7d] = "TPM_ORD_OwnerReadPubek",
    [0x7e] = "TPM_ORD_DisablePubekRead", [0x7f] = "TPM_ORD_CreateRevocableEK",
    [0x80] = "TPM_ORD_RevokeTrust", [0x81] = "TPM_ORD_OwnerReadInternalPub",
    [0x82] = "TPM_ORD_GetAuditEvent", [0x83] = "TPM_ORD_GetAuditEventSigned",
    [0x85] = "TPM_ORD_GetAuditDigest", [0x86] = "TPM_ORD_GetAuditDigestSigned",
    [0x8c] = "TPM_ORD_GetOrdinalAuditStatus", [0x8d] = "TPM_ORD_SetOrdinalAuditStatus",
    [0x96] = "TPM_ORD_Terminate_Handle", [0x97] = "TPM_ORD_Init", [0x98] = "TPM_ORD_SaveState",
    [0x99] = "TPM_ORD_Startup", [0x9a] = "TPM_ORD_SetRedirection", [0xa0] = "TPM_ORD_SHA1Start",
    [0xa1] = "TPM_ORD_SHA1Update", [0xa2] = "TPM_ORD_SHA1Complete", [0xa3] = "TPM_ORD_SHA1CompleteExtend",
    [0xaa] = "TPM_ORD_FieldUpgrade", [0xb4] = "TPM_ORD_SaveKeyContext", [0xb5] = "TPM_ORD_LoadKeyContext",
    [0xb6] = "TPM_ORD_SaveAuthContext", [0xb7] = "TPM_ORD_LoadAuthContext", [0xb8] = "TPM_ORD_SaveContext",
    [0xb9] = "TPM_ORD_LoadContext", [0xba] = "TPM_ORD_FlushSpecific", [0xc8] = "TPM_ORD_PCR_Reset",
    [0xcc] = "TPM_ORD_NV_DefineSpace", [0xcd] = "TPM_ORD_NV_WriteValue",
    [0xce] = "TPM_ORD_NV_WriteValueAuth", [0xcf] = "TPM_ORD_NV_ReadValue",
    [0xd0] = "TPM_ORD_NV_ReadValueAuth", [0xd1] = "TPM_ORD_Delegate_UpdateVerification",
    [0xd2] = "TPM_ORD_Delegate_Manage", [0xd4] = "TPM_ORD_Delegate_CreateKeyDelegation",
    [0xd5] = "TPM_ORD_Delegate_CreateOwnerDelegation", [0xd6] = "TPM_ORD_Delegate_VerifyDelegation",
    [0xd8] = "TPM_ORD_Delegate_LoadOwnerDelegation", [0xdb] = "TPM_ORD_Delegate_ReadTable",
    [0xdc] = "TPM_ORD_CreateCounter", [0xdd] = "TPM_ORD_IncrementCounter", [0xde] = "TPM_ORD_ReadCounter",
    [0xdf] = "TPM_ORD_ReleaseCounter", [0xe0] = "TPM_ORD_ReleaseCounterOwner",
    [0xe6] = "TPM_ORD_EstablishTransport", [0xe7] = "TPM_ORD_ExecuteTransport",
    [0xe8] = "TPM_ORD_ReleaseTransportSigned", [0xf1] = "TPM_ORD_GetTicks", [0xf2] = "TPM_ORD_TickStampBlob",
    [0x4000000a] = "TSC_ORD_PhysicalPresence", [0x4000000b] = "TSC_ORD_ResetEstablishmentBit",
}

local TPM12_TAG = {
    [0x00c1] = "TPM_TAG_RQU_COMMAND", [0x00c2] = "TPM_TAG_RQU_AUTH1_COMMAND",
    [0x00c3] = "TPM_TAG_RQU_AUTH2_COMMAND", [0x00c4] = "TPM_TAG_RSP_COMMAND",
    [0x00c5] = "TPM_TAG_RSP_AUTH1_COMMAND", [0x00c6] = "TPM_TAG_RSP_AUTH2_COMMAND",
}
M.RC, M.ORD, M.TAG = TPM12_RC, TPM12_ORD, TPM12_TAG

local p = S.p_tpm12
local t = {
    tag = ProtoField.uint16("tpm12.tag", "Tag", base.HEX, TPM12_TAG),
    size = ProtoField.uint32("tpm12.size", "Size", base.DEC),
    ordinal = ProtoField.uint32("tpm12.ordinal", "Ordinal", base.HEX, TPM12_ORD),
    rc = ProtoField.uint32("tpm12.rc", "Return code", base.HEX, TPM12_RC),
    params = ProtoField.bytes("tpm12.params", "Parameters"),
}
-- shares the protocol's name: whether a filter names the protocol itself (swtpm/tree.lua)
M.alias = ProtoField.protocol("tpm12", "TPM 1.2")
p.fields = { t.tag, t.size, t.ordinal, t.rc, t.params, M.alias }
local e_short = ProtoExpert.new("tpm12.short", "Shorter than a TPM 1.2 header",
                                expert.group.MALFORMED, expert.severity.WARN)
local e_failed = ProtoExpert.new("tpm12.failed", "The TPM 1.2 command failed",
                                 expert.group.RESPONSE_CODE, expert.severity.ERROR)
p.experts = { e_short, e_failed }

function M.name(table_, code)
    return table_[code] or string.format("0x%x", code)
end

function M.is_tag(tag, is_request)
    if is_request then return tag >= 0x00c1 and tag <= 0x00c3 end
    return tag >= 0x00c4 and tag <= 0x00c6
end

-- Decode a TPM 1.2 message (s: its bytes; item: this protocol's item). code: the request's
-- ordinal (responses: the paired request's, or nil). Returns the Info column's text and, for
-- responses, the return code.
function M.dissect(tvb, s, pinfo, item, ctx, is_request, code)
    pinfo.cols.protocol:set("TPM 1.2")
    local len = #s
    if len < 10 then
        item:add_proto_expert_info(e_short)
        return is_request and "TPM 1.2 request (short)" or "TPM 1.2 response (short)", nil
    end
    ctx:add(item, t.tag, 0, 2)
    ctx:add(item, t.size, 2, 4)
    local v = S.walk.uint(s, 6, 4)
    local text, rc
    if is_request then
        ctx:add(item, t.ordinal, 6, 4)
        text = string.format("[TPM 1.2 Request] %s, len(%d)", M.name(TPM12_ORD, v), len)
        ctx:text(item, ", " .. M.name(TPM12_ORD, v))
    else
        rc = v
        ctx:add(item, t.rc, 6, 4)
        ctx:text(item, ", " .. M.name(TPM12_RC, v))
        local what = code and M.name(TPM12_ORD, code) or "unknown ordinal"
        text = string.format("[TPM 1.2 Response] %s: %s, len(%d)", what, M.name(TPM12_RC, v), len)
        if v ~= 0 then item:add_proto_expert_info(e_failed, what .. " failed: " .. M.name(TPM12_RC, v)) end
    end
    if len > 10 then ctx:add(item, t.params, 10, len - 10) end
    return text, rc
end

return M
