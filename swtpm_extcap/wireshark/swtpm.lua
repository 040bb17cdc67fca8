-- swtpm.lua: Wireshark plugin for swtpm-extcap captures (SWTPM debug logs as pcapng).
--
-- Installed by `python -m swtpm_extcap install` (and install.sh) into Wireshark's personal
-- Lua plugin folder. It adds:
--   * "swtpm"        (postdissector, every frame of an swtpm-extcap capture): the log line
--                    and run the frame comes from (swtpm.line, swtpm.run), and for TPM and
--                    control messages the request/response link: swtpm.cc (the command on
--                    requests AND responses), swtpm.request_in, swtpm.response_in,
--                    swtpm.time; PCR notes of the comments as swtpm.pcr.*.
--   * "swtpm.ctrl"   swtpm's control channel (TCP port 2323, tpm_ioctl.h CMD_*), every
--                    command by name with its fields, responses decoded by their command.
--   * "tpm12"        TPM 1.2 messages on port 2321 (tag 0x00C1..0x00C6): header, ordinal or
--                    return code by name. Wireshark's own "tpm" dissector is TPM 2.0 only;
--                    TPM 2.0 messages still go to it, unchanged.
--
-- Where the line and run come from: swtpm-extcap writes them into the Ethernet addresses
-- (destination 02:00:RR:RR:RR:RR = run, source 02:00:LL:LL:LL:LL = log line, big-endian
-- u32). Older captures carry them only in the frame comment ("swtpm log line N: ..."),
-- which is read as a fallback.
--
-- Pairing: one record of the log is one TCP segment; per TCP stream a response answers
-- the last request before it (swtpm serves one command at a time on a connection). A
-- second response segment to the same request (the log's "Ctrl Rsp Continued", the state
-- blob of CMD_GET_STATEBLOB) is marked as a continuation.
--
-- Numbers and layouts: swtpm's include/swtpm/tpm_ioctl.h (CMD_*, ptm_* structs, PTM_CAP_*)
-- and src/swtpm/ctrlchannel.c (GET_CAPABILITY answers a bare u64; errors are a bare u32
-- result); TPM 1.2 ordinals and return codes from the TPM 1.2 Main Specification Part 2.

local PLUGIN_VERSION = "0.1.0"
if set_plugin_info then
    set_plugin_info({
        version = PLUGIN_VERSION,
        description = "swtpm-extcap: SWTPM control channel, TPM 1.2, request/response links",
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

local TPM_PORT = 2321
local CTRL_PORT = 2323
local CLIENT_PORT_BASE = 50000

-- ---------------------------------------------------------------- value tables

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

-- the control channel's result: TPM 1.2 codes, and the TPM 2.0 codes CMD_INIT passes on
local CTRL_RESULT = {}
for code, name in pairs(TPM12_RC) do CTRL_RESULT[code] = name end
CTRL_RESULT[0x100] = "TPM_RC_INITIALIZE"
CTRL_RESULT[0x101] = "TPM_RC_FAILURE"

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

-- TPM 2.0 command codes, as Wireshark's TPM dissector names them (a test holds this
-- table to `tshark -G values`); TPM 1.2 ordinals do not overlap them
local TPM2_CC = {
    [0x11f]="TPM2_CC_NV_UndefineSpaceSpecial", [0x120]="TPM2_CC_EvictControl", [0x121]="TPM2_CC_HierarchyControl",
    [0x122]="TPM2_CC_NV_UndefineSpace", [0x124]="TPM2_CC_ChangeEPS", [0x125]="TPM2_CC_ChangePPS",
    [0x126]="TPM2_CC_Clear", [0x127]="TPM2_CC_ClearControl", [0x128]="TPM2_CC_ClockSet",
    [0x129]="TPM2_CC_HierarchyChangeAuth", [0x12a]="TPM2_CC_NV_DefineSpace", [0x12b]="TPM2_CC_PCR_Allocate",
    [0x12c]="TPM2_CC_PCR_SetAuthPolicy", [0x12d]="TPM2_CC_PP_Commands", [0x12e]="TPM2_CC_SetPrimaryPolicy",
    [0x12f]="TPM2_CC_FieldUpgradeStart", [0x130]="TPM2_CC_ClockRateAdjust", [0x131]="TPM2_CC_CreatePrimary",
    [0x132]="TPM2_CC_NV_GlobalWriteLock", [0x133]="TPM2_CC_GetCommandAuditDigest", [0x134]="TPM2_CC_NV_Increment",
    [0x135]="TPM2_CC_NV_SetBits", [0x136]="TPM2_CC_NV_Extend", [0x137]="TPM2_CC_NV_Write",
    [0x138]="TPM2_CC_NV_WriteLock", [0x139]="TPM2_CC_DictionaryAttackLockReset", [0x13a]="TPM2_CC_DictionaryAttackParameters",
    [0x13b]="TPM2_CC_NV_ChangeAuth", [0x13c]="TPM2_CC_PCR_Event", [0x13d]="TPM2_CC_PCR_Reset",
    [0x13e]="TPM2_CC_SequenceComplete", [0x13f]="TPM2_CC_SetAlgorithmSet", [0x140]="TPM2_CC_SetCommandCodeAuditStatus",
    [0x141]="TPM2_CC_FieldUpgradeData", [0x142]="TPM2_CC_IncrementalSelfTest", [0x143]="TPM2_CC_SelfTest",
    [0x144]="TPM2_CC_Startup", [0x145]="TPM2_CC_Shutdown", [0x146]="TPM2_CC_StirRandom",
    [0x147]="TPM2_CC_ActivateCredential", [0x148]="TPM2_CC_Certify", [0x149]="TPM2_CC_PolicyNV",
    [0x14a]="TPM2_CC_CertifyCreation", [0x14b]="TPM2_CC_Duplicate", [0x14c]="TPM2_CC_GetTime",
    [0x14d]="TPM2_CC_GetSessionAuditDigest", [0x14e]="TPM2_CC_NV_Read", [0x14f]="TPM2_CC_NV_ReadLock",
    [0x150]="TPM2_CC_ObjectChangeAuth", [0x151]="TPM2_CC_PolicySecret", [0x152]="TPM2_CC_Rewrap",
    [0x153]="TPM2_CC_Create", [0x154]="TPM2_CC_ECDH_ZGen", [0x155]="TPM2_CC_HMAC",
    [0x156]="TPM2_CC_Import", [0x157]="TPM2_CC_Load", [0x158]="TPM2_CC_Quote",
    [0x159]="TPM2_CC_RSA_Decrypt", [0x15b]="TPM2_CC_HMAC_Start", [0x15c]="TPM2_CC_SequenceUpdate",
    [0x15d]="TPM2_CC_Sign", [0x15e]="TPM2_CC_Unseal", [0x160]="TPM2_CC_PolicySigned",
    [0x161]="TPM2_CC_ContextLoad", [0x162]="TPM2_CC_ContextSave", [0x163]="TPM2_CC_ECDH_KeyGen",
    [0x164]="TPM2_CC_EncryptDecrypt", [0x165]="TPM2_CC_FlushContext", [0x167]="TPM2_CC_LoadExternal",
    [0x168]="TPM2_CC_MakeCredential", [0x169]="TPM2_CC_NV_ReadPublic", [0x16a]="TPM2_CC_PolicyAuthorize",
    [0x16b]="TPM2_CC_PolicyAuthValue", [0x16c]="TPM2_CC_PolicyCommandCode", [0x16d]="TPM2_CC_PolicyCounterTimer",
    [0x16e]="TPM2_CC_PolicyCpHash", [0x16f]="TPM2_CC_PolicyLocality", [0x170]="TPM2_CC_PolicyNameHash",
    [0x171]="TPM2_CC_PolicyOR", [0x172]="TPM2_CC_PolicyTicket", [0x173]="TPM2_CC_ReadPublic",
    [0x174]="TPM2_CC_RSA_Encrypt", [0x176]="TPM2_CC_StartAuthSession", [0x177]="TPM2_CC_VerifySignature",
    [0x178]="TPM2_CC_ECC_Parameters", [0x179]="TPM2_CC_FirmwareRead", [0x17a]="TPM2_CC_GetCapability",
    [0x17b]="TPM2_CC_GetRandom", [0x17c]="TPM2_CC_GetTestResult", [0x17d]="TPM2_CC_Hash",
    [0x17e]="TPM2_CC_PCR_Read", [0x17f]="TPM2_CC_PolicyPCR", [0x180]="TPM2_CC_PolicyRestart",
    [0x181]="TPM2_CC_ReadClock", [0x182]="TPM2_CC_PCR_Extend", [0x183]="TPM2_CC_PCR_SetAuthValue",
    [0x184]="TPM2_CC_NV_Certify", [0x185]="TPM2_CC_EventSequenceComplete", [0x186]="TPM2_CC_HashSequenceStart",
    [0x187]="TPM2_CC_PolicyPhysicalPresence", [0x188]="TPM2_CC_PolicyDuplicationSelect", [0x189]="TPM2_CC_PolicyGetDigest",
    [0x18a]="TPM2_CC_TestParms", [0x18b]="TPM2_CC_Commit", [0x18c]="TPM2_CC_PolicyPassword",
    [0x18d]="TPM2_CC_ZGen_2Phase", [0x18e]="TPM2_CC_EC_Ephemeral", [0x18f]="TPM2_CC_PolicyNvWritten",
    [0x190]="TPM2_CC_PolicyTemplate", [0x191]="TPM2_CC_CreateLoaded", [0x192]="TPM2_CC_PolicyAuthorizeNV",
    [0x193]="TPM2_CC_EncryptDecrypt2", [0x194]="TPM2_CC_AC_GetCapability", [0x195]="TPM2_CC_AC_Send",
    [0x196]="TPM2_CC_Policy_AC_SendSelect", [0x197]="TPM2_CC_CertifyX509", [0x198]="TPM2_CC_ACT_SetTimeout",
    [0x199]="TPM2_CC_ECC_Encrypt", [0x19a]="TPM2_CC_ECC_Decrypt",
}

-- swtpm.cc: TPM 2.0 command codes and TPM 1.2 ordinals in one field
local COMMAND = {}
for code, name in pairs(TPM2_CC) do COMMAND[code] = name end
for code, name in pairs(TPM12_ORD) do COMMAND[code] = name end

-- ------------------------------------------------------------------- protocols

local p_swtpm = Proto("swtpm", "SWTPM (swtpm-extcap)")
local p_ctrl = Proto("swtpm.ctrl", "SWTPM control channel")
local p_tpm12 = Proto("tpm12", "TPM 1.2")

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
    ctrl_cmd = ProtoField.uint32("swtpm.ctrl_cmd", "Control command", base.HEX, CTRL_CMD),
    request_in = ProtoField.framenum("swtpm.request_in", "Request in", base.NONE, FT_REQUEST),
    response_in = ProtoField.framenum("swtpm.response_in", "Response in", base.NONE, FT_RESPONSE),
    time = ProtoField.relative_time("swtpm.time", "Time since request"),
    continued = ProtoField.bool("swtpm.continued", "Continuation of the response"),
    no_request = ProtoField.bool("swtpm.no_request", "No request before this response"),
    pcr = ProtoField.string("swtpm.pcr", "PCR note"),
    pcr_extend = ProtoField.uint32("swtpm.pcr.extend", "PCR extend #"),
    pcr_index = ProtoField.uint32("swtpm.pcr.index", "PCR"),
    pcr_bank = ProtoField.string("swtpm.pcr.bank", "PCR bank"),
    pcr_value = ProtoField.string("swtpm.pcr.value", "PCR value (hex)"),
}
p_swtpm.fields = f

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

local t = {
    tag = ProtoField.uint16("tpm12.tag", "Tag", base.HEX, TPM12_TAG),
    size = ProtoField.uint32("tpm12.size", "Size", base.DEC),
    ordinal = ProtoField.uint32("tpm12.ordinal", "Ordinal", base.HEX, TPM12_ORD),
    rc = ProtoField.uint32("tpm12.rc", "Return code", base.HEX, TPM12_RC),
    params = ProtoField.bytes("tpm12.params", "Parameters"),
}
p_tpm12.fields = t

local e_no_request = ProtoExpert.new("swtpm.no_request.expert", "Response without a request before it",
                                     expert.group.SEQUENCE, expert.severity.NOTE)
local e_failed = ProtoExpert.new("swtpm.ctrl.failed", "The command failed",
                                 expert.group.RESPONSE_CODE, expert.severity.NOTE)
local e_short = ProtoExpert.new("swtpm.ctrl.short", "Message shorter than its layout",
                                expert.group.MALFORMED, expert.severity.WARN)
local e_tpm12_short = ProtoExpert.new("tpm12.short", "Shorter than a TPM 1.2 header",
                                      expert.group.MALFORMED, expert.severity.WARN)
p_swtpm.experts = { e_no_request }
p_ctrl.experts = { e_failed, e_short }
p_tpm12.experts = { e_tpm12_short }

-- --------------------------------------------------------- fields read from others

-- (display only: in a first pass without a tree, e.g. `tshark -2` without a filter,
-- field extractors give nothing, so the request/response bookkeeping uses pinfo alone)
local fx_eth_src = Field.new("eth.src")
local fx_eth_dst = Field.new("eth.dst")
local ok_comment, fx_comment = pcall(Field.new, "frame.comment")
if not ok_comment then fx_comment = nil end

-- Wireshark's TPM 2.0 dissector: not registered by name, only on tcp.port 2321 (taken
-- before this plugin puts itself there)
local tcp_port = DissectorTable.get("tcp.port")
local tpm2_dissector = tcp_port:get_dissector(TPM_PORT)

-- ------------------------------------------------------------- request/response

-- per capture file; rebuilt by init() whenever Wireshark dissects the file afresh
local messages = {}  -- frame number -> message record (kept for later passes)
local last_request = {}  -- channel .. stream -> the last request's record

local function reset_state()
    messages = {}
    last_request = {}
end
p_swtpm.init = reset_state

-- the TCP connection: address and client port (a new connection on the same port, e.g.
-- in the next pcapng section, starts with its own request, which replaces the last one)
local function stream_key(channel, pinfo)
    local client = pinfo.src_port
    if client == TPM_PORT or client == CTRL_PORT then client = pinfo.dst_port end
    return channel .. ":" .. tostring(pinfo.src) .. ":" .. client
end

-- seconds since the first frame: small numbers, so differences are exact to the ns
-- (pinfo.abs_ts, about 1.8e9, would round them to a quarter microsecond)
local function seconds_between(earlier, later)
    local delta = later - earlier
    if delta < 0 then delta = 0 end
    local whole = math.floor(delta)
    return NSTime.new(whole, math.floor((delta - whole) * 1e9 + 0.5))
end

-- Record one message (first pass) or look it up (later passes).
-- code: the command code for requests (nil when unreadable); version: "2.0"/"1.2"/nil
local function note_message(pinfo, channel, is_request, code, version)
    local number = pinfo.number
    local msg = messages[number]
    if msg ~= nil then return msg end
    if pinfo.visited then return nil end  -- a frame the first pass did not see here
    local key = stream_key(channel, pinfo)
    if is_request then
        msg = { channel = channel, request = true, code = code, version = version,
                frame = number, ts = pinfo.rel_ts }
        last_request[key] = msg
    else
        local req = last_request[key]
        msg = { channel = channel, request = false, frame = number, ts = pinfo.rel_ts }
        if req ~= nil then
            msg.code = req.code
            msg.version = req.version
            msg.request_in = req.frame
            msg.delta = seconds_between(req.ts, msg.ts)
            if req.response_in == nil then
                req.response_in = number
            else
                msg.continued = true
            end
        else
            msg.version = version
        end
    end
    messages[number] = msg
    return msg
end

-- ------------------------------------------------------------------- TPM 1.2

local function tpm12_name(table_, code)
    return table_[code] or string.format("0x%x", code)
end

local function is_tpm12_tag(tag, is_request)
    if is_request then return tag >= 0x00c1 and tag <= 0x00c3 end
    return tag >= 0x00c4 and tag <= 0x00c6
end

local function dissect_tpm12(tvb, pinfo, tree, is_request)
    pinfo.cols.protocol:set("TPM 1.2")
    local item = tree:add(p_tpm12, tvb())
    local len = tvb:len()
    if len < 10 then
        item:add_proto_expert_info(e_tpm12_short)
        pinfo.cols.info:set(is_request and "TPM 1.2 request (short)" or "TPM 1.2 response (short)")
        return
    end
    item:add(t.tag, tvb(0, 2))
    item:add(t.size, tvb(2, 4))
    local code = tvb(6, 4):uint()
    if is_request then
        item:add(t.ordinal, tvb(6, 4))
        item:append_text(", " .. tpm12_name(TPM12_ORD, code))
        pinfo.cols.info:set(string.format("[TPM 1.2 Request] %s, len(%d)", tpm12_name(TPM12_ORD, code), len))
    else
        item:add(t.rc, tvb(6, 4))
        item:append_text(", " .. tpm12_name(TPM12_RC, code))
    end
    if len > 10 then item:add(t.params, tvb(10)) end
end

-- -------------------------------------------------------- port 2321: TPM messages

-- Replaces Wireshark's "tpm" on tcp.port 2321: TPM 1.2 messages are decoded here,
-- everything else goes to the TPM 2.0 dissector exactly as before.
local function dissect_tpm_port(tvb, pinfo, tree)
    local is_request = pinfo.dst_port == TPM_PORT
    local len = tvb:len()
    local tag = len >= 2 and tvb(0, 2):uint() or nil
    local code
    if is_request and len >= 10 then code = tvb(6, 4):uint() end
    local version
    if tag ~= nil and is_tpm12_tag(tag, is_request) then version = "1.2" else version = "2.0" end
    local msg = note_message(pinfo, "tpm", is_request, code, version)
    if msg ~= nil and not is_request and msg.request_in ~= nil then version = msg.version end
    if version == "1.2" then
        dissect_tpm12(tvb, pinfo, tree, is_request)
        if not is_request and msg ~= nil then
            local rc = len >= 10 and tvb(6, 4):uint() or nil
            local what = msg.code and tpm12_name(TPM12_ORD, msg.code) or "unknown ordinal"
            pinfo.cols.info:set(string.format("[TPM 1.2 Response] %s: %s, len(%d)", what,
                                              rc and tpm12_name(TPM12_RC, rc) or "?", len))
        end
        return len
    end
    if tpm2_dissector == nil then return 0 end  -- no TPM 2.0 dissector: leave it to "data"
    -- Dissector:call shows the TPM dissector's exception (e.g. [Malformed Packet]) as
    -- Wireshark would, then raises it as a Lua error: caught here, the frame looks the same
    local ok, consumed = pcall(tpm2_dissector.call, tpm2_dissector, tvb, pinfo, tree)
    if ok then return consumed end
    return len
end

p_tpm12.dissector = dissect_tpm_port

-- ------------------------------------------------------ port 2323: control channel

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
    local is_request = pinfo.dst_port == CTRL_PORT
    local cmd
    if is_request and len >= 4 then cmd = tvb(0, 4):uint() end
    local msg = note_message(pinfo, "ctrl", is_request, cmd, nil)
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
    local code = msg and msg.code
    local name = code and (CTRL_CMD[code] or string.format("unknown command 0x%x", code))
                 or "unknown command"
    if code ~= nil then item:add(c.cmd, code):set_generated() end
    if msg ~= nil and msg.continued then
        item:add(c.blob, tvb())
        item:append_text(", " .. name .. " response continued")
        pinfo.cols.info:set(string.format("%s response continued: %d bytes", name, len))
        return len
    end
    local summary = ctrl_response(tvb, item, code)
    item:append_text(", " .. name .. " response" .. summary)
    pinfo.cols.info:set(name .. " response:" .. summary)
    return len
end

-- -------------------------------------------------------- the swtpm postdissector

local function marker(fieldinfo)
    -- 02:00:XX:XX:XX:XX -> the u32, else nil
    if fieldinfo == nil then return nil end
    local range = fieldinfo.range
    if range == nil or range:len() ~= 6 or range:range(0, 2):uint() ~= 0x0200 then return nil end
    return range:range(2, 4):uint()
end

local function comments()
    if fx_comment == nil then return {} end
    local out = {}
    for _, fi in ipairs({ fx_comment() }) do out[#out + 1] = tostring(fi.value) end
    return out
end

local function line_and_run(pinfo, notes)
    local line = marker(fx_eth_src())
    local run = marker(fx_eth_dst())
    if line ~= nil and line > 0 then return line, run end
    -- an older capture: "swtpm log line N: ..." in the comment, run from the client port
    for _, text in ipairs(notes) do
        local n = text:match("^swtpm log line (%d+)") or text:match("connection opened for log line (%d+)")
        if n ~= nil then
            local port = math.max(pinfo.src_port, pinfo.dst_port)
            local old_run = port >= CLIENT_PORT_BASE and port - CLIENT_PORT_BASE + 1 or nil
            return tonumber(n), old_run
        end
    end
    return nil, nil
end

local function add_pcr_notes(tree, tvb, notes)
    for _, text in ipairs(notes) do
        for note in text:gmatch("pcr:[^\n]*") do
            local item = tree:add(f.pcr, tvb(0, 0), note)
            item:set_generated()
            local n, index, bank, hex = note:match("extend #(%d+) PCR (%d+) (%w+) = (%x+)")
            if n ~= nil then
                item:add(f.pcr_extend, tvb(0, 0), tonumber(n)):set_generated()
                item:add(f.pcr_index, tvb(0, 0), tonumber(index)):set_generated()
                item:add(f.pcr_bank, tvb(0, 0), bank):set_generated()
                item:add(f.pcr_value, tvb(0, 0), hex:lower()):set_generated()
            end
        end
    end
end

local function tpm2_response_info(pinfo, name)
    local info = tostring(pinfo.cols.info)
    local at = info:find("[TPM Response]", 1, true)
    if at ~= nil then
        local after = at + #"[TPM Response]"
        pinfo.cols.info:set(info:sub(1, after - 1) .. " " .. name .. info:sub(after))
    else
        pinfo.cols.info:append(" (" .. name .. ")")
    end
end

function p_swtpm.dissector(tvb, pinfo, tree)
    local msg = messages[pinfo.number]
    local notes = comments()
    local line, run = line_and_run(pinfo, notes)
    if msg == nil and line == nil then return end
    local item = tree:add(p_swtpm, tvb(0, 0))
    if line ~= nil then
        item:add(f.line, tvb(0, 0), line):set_generated()
        item:append_text(", log line " .. line)
    end
    if run ~= nil then
        item:add(f.run, tvb(0, 0), run):set_generated()
        item:append_text(", run " .. run)
    end
    add_pcr_notes(item, tvb, notes)
    if msg == nil then return end
    item:add(f.channel, tvb(0, 0), msg.channel):set_generated()
    item:add(f.direction, tvb(0, 0), msg.request and "request" or "response"):set_generated()
    if msg.channel == "tpm" and msg.version ~= nil then
        item:add(f.tpm_version, tvb(0, 0), msg.version):set_generated()
    end
    if msg.code ~= nil then
        if msg.channel == "tpm" then
            item:add(f.cc, tvb(0, 0), msg.code):set_generated()
        else
            item:add(f.ctrl_cmd, tvb(0, 0), msg.code):set_generated()
        end
    end
    if msg.request then
        if msg.response_in ~= nil then
            item:add(f.response_in, tvb(0, 0), msg.response_in):set_generated()
        end
        return
    end
    if msg.request_in == nil then
        local no = item:add(f.no_request, tvb(0, 0), true)
        no:set_generated()
        no:add_proto_expert_info(e_no_request)
        return
    end
    item:add(f.request_in, tvb(0, 0), msg.request_in):set_generated()
    item:add(f.time, tvb(0, 0), msg.delta):set_generated()
    if msg.continued then item:add(f.continued, tvb(0, 0), true):set_generated() end
    if msg.channel == "tpm" and msg.version ~= "1.2" and msg.code ~= nil then
        tpm2_response_info(pinfo, COMMAND[msg.code] or string.format("command 0x%x", msg.code))
    end
end

register_postdissector(p_swtpm)
tcp_port:add(TPM_PORT, p_tpm12)
tcp_port:add(CTRL_PORT, p_ctrl)
