"""TPM 2.0 command codes and their names, as Wireshark's TPM dissector names them."""

from __future__ import annotations

from functools import lru_cache

#: TPM 2.0 command codes (TPM 2.0 Library Part 2, TPM_CC), as Wireshark's TPM
#: dissector names them without the ``TPM2_CC_`` prefix
_TPM2_CC = """
11F NV_UndefineSpaceSpecial 120 EvictControl 121 HierarchyControl 122 NV_UndefineSpace
124 ChangeEPS 125 ChangePPS 126 Clear 127 ClearControl 128 ClockSet 129 HierarchyChangeAuth
12A NV_DefineSpace 12B PCR_Allocate 12C PCR_SetAuthPolicy 12D PP_Commands 12E SetPrimaryPolicy
12F FieldUpgradeStart 130 ClockRateAdjust 131 CreatePrimary 132 NV_GlobalWriteLock
133 GetCommandAuditDigest 134 NV_Increment 135 NV_SetBits 136 NV_Extend 137 NV_Write
138 NV_WriteLock 139 DictionaryAttackLockReset 13A DictionaryAttackParameters 13B NV_ChangeAuth
13C PCR_Event 13D PCR_Reset 13E SequenceComplete 13F SetAlgorithmSet
140 SetCommandCodeAuditStatus 141 FieldUpgradeData 142 IncrementalSelfTest 143 SelfTest
144 Startup 145 Shutdown 146 StirRandom 147 ActivateCredential 148 Certify 149 PolicyNV
14A CertifyCreation 14B Duplicate 14C GetTime 14D GetSessionAuditDigest 14E NV_Read
14F NV_ReadLock 150 ObjectChangeAuth 151 PolicySecret 152 Rewrap 153 Create 154 ECDH_ZGen
155 HMAC 156 Import 157 Load 158 Quote 159 RSA_Decrypt 15B HMAC_Start 15C SequenceUpdate
15D Sign 15E Unseal 160 PolicySigned 161 ContextLoad 162 ContextSave 163 ECDH_KeyGen
164 EncryptDecrypt 165 FlushContext 167 LoadExternal 168 MakeCredential 169 NV_ReadPublic
16A PolicyAuthorize 16B PolicyAuthValue 16C PolicyCommandCode 16D PolicyCounterTimer
16E PolicyCpHash 16F PolicyLocality 170 PolicyNameHash 171 PolicyOR 172 PolicyTicket
173 ReadPublic 174 RSA_Encrypt 176 StartAuthSession 177 VerifySignature 178 ECC_Parameters
179 FirmwareRead 17A GetCapability 17B GetRandom 17C GetTestResult 17D Hash 17E PCR_Read
17F PolicyPCR 180 PolicyRestart 181 ReadClock 182 PCR_Extend 183 PCR_SetAuthValue
184 NV_Certify 185 EventSequenceComplete 186 HashSequenceStart 187 PolicyPhysicalPresence
188 PolicyDuplicationSelect 189 PolicyGetDigest 18A TestParms 18B Commit 18C PolicyPassword
18D ZGen_2Phase 18E EC_Ephemeral 18F PolicyNvWritten 190 PolicyTemplate 191 CreateLoaded
192 PolicyAuthorizeNV 193 EncryptDecrypt2 194 AC_GetCapability 195 AC_Send
196 Policy_AC_SendSelect 197 CertifyX509 198 ACT_SetTimeout 199 ECC_Encrypt 19A ECC_Decrypt
"""


@lru_cache(maxsize=1)
def _tpm2_commands() -> tuple[tuple[int, str], ...]:
    """The table as (command code, name without prefix) pairs."""
    words = _TPM2_CC.split()
    return tuple((int(code, 16), name) for code, name in zip(words[::2], words[1::2]))


def tpm2_command_codes() -> dict[str, int]:
    """Lower-case command name (no prefix) -> TPM 2.0 command code."""
    return {name.lower(): code for code, name in _tpm2_commands()}


def tpm2_command_name(code: int) -> str | None:
    """``TPM2_CC_Unseal`` for 0x15e; None for a code not in the table."""
    return next((f"TPM2_CC_{name}" for cc, name in _tpm2_commands() if cc == code), None)
