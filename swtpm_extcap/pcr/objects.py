"""Which object or NV index each handle is, with its Name and authPolicy, as far as the
log shows: public areas of CreatePrimary, Load, CreateLoaded, LoadExternal and
ReadPublic answers; NV_DefineSpace and NV_ReadPublic for NV indices; followed through
ContextSave/ContextLoad (by the saved context's bytes), EvictControl, FlushContext, the
writes and locks that change an NV index's Name, and run starts (transient objects go).
Pure: the tracker (:mod:`.policy`) calls it with what each command did."""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, replace

from ..tpm.structures import (
    HT_HMAC_SESSION,
    HT_NV,
    HT_PERSISTENT,
    HT_POLICY_SESSION,
    HT_TRANSIENT,
    Command,
    Malformed,
    NvPublic,
    Public,
    Reader,
    handle_name,
    read_nv_public,
    read_public,
)

OTHER = {
    "StartAuthSession": 0x176, "FlushContext": 0x165, "ContextSave": 0x162, "ContextLoad": 0x161,
    "Load": 0x157, "CreatePrimary": 0x131, "CreateLoaded": 0x191, "LoadExternal": 0x167,
    "ReadPublic": 0x173, "EvictControl": 0x120, "NV_DefineSpace": 0x12A,
    "NV_UndefineSpace": 0x122, "NV_UndefineSpaceSpecial": 0x11F, "NV_ReadPublic": 0x169,
    "NV_Write": 0x137, "NV_Increment": 0x134, "NV_Extend": 0x136, "NV_SetBits": 0x135,
    "NV_WriteLock": 0x138, "NV_ReadLock": 0x14F, "Startup": 0x144,
}
_CONTEXT_SAVE, _CONTEXT_LOAD, _READ_PUBLIC = OTHER["ContextSave"], OTHER["ContextLoad"], OTHER["ReadPublic"]
#: the commands :meth:`Objects.plain` reads: those a tpm2-tools session repeats most
PLAIN = frozenset({_CONTEXT_SAVE, _CONTEXT_LOAD, _READ_PUBLIC})
_U32 = struct.Struct(">I")
#: saved contexts remembered (tpm2-tools saves one per command it runs)
KEEP_CONTEXTS = 512
_PERMANENT = {
    0x40000001: "the owner hierarchy (TPM_RH_OWNER)",
    0x40000007: "TPM_RH_NULL",
    0x4000000A: "the lockout hierarchy (TPM_RH_LOCKOUT)",
    0x4000000B: "the endorsement hierarchy (TPM_RH_ENDORSEMENT)",
    0x4000000C: "the platform hierarchy (TPM_RH_PLATFORM)",
    0x4000000D: "TPM_RH_PLATFORM_NV",
}


@dataclass(frozen=True, slots=True)
class Entity:
    """An object or NV index as the log shows it (``public``: its public area)."""

    handle: int
    public: Public | NvPublic
    line: int  # the log line of the command that showed it
    how: str  # "loaded by Load", "created by CreatePrimary", "read by ReadPublic", ...
    given_name: bytes | None = None  # the Name the TPM answered, where the public area is a template

    @property
    def name(self) -> bytes | None:
        return self.given_name if self.given_name is not None else self.public.name

    @property
    def auth_policy(self) -> bytes:
        return self.public.auth_policy

    @property
    def is_nv(self) -> bool:
        return isinstance(self.public, NvPublic)

    def describe(self) -> str:
        kind = "NV index" if self.is_nv else "the object"
        return f"{kind} 0x{self.handle:08x} ({self.how} at line {self.line})"


def describe_handle(handle: int) -> str:
    if handle in _PERMANENT:
        return _PERMANENT[handle]
    kind = {HT_NV: "NV index", HT_TRANSIENT: "object", HT_PERSISTENT: "persistent object"}.get(
        handle >> 24, "handle")
    return f"{kind} 0x{handle:08x}"


class Objects:
    """Handles -> entities, saved contexts -> entities."""

    def __init__(self) -> None:
        self.handles: dict[int, Entity] = {}
        self._saved: OrderedDict[bytes, Entity] = OrderedDict()

    def get(self, handle: int) -> Entity | None:
        return self.handles.get(handle)

    def name_of(self, handle: int) -> tuple[bytes | None, str]:
        """The Name of ``handle``'s entity, or None and why it is not known."""
        name = handle_name(handle)
        if name is not None:
            return name, ""
        entity = self.handles.get(handle)
        if entity is None:
            return None, f"the log does not show the public area of {describe_handle(handle)}"
        if entity.name is None:
            return None, f"this Python cannot compute the Name of {describe_handle(handle)}"
        return entity.name, ""

    def show(self, handle: int, public: Public | NvPublic, line: int, how: str,
             name: bytes | None = None) -> None:
        self.handles[handle] = Entity(handle, public, line, how, name)

    def follow(self, cmd: Command, handle: int | None, out: Reader, line: int) -> None:
        """What a successful command (``out``: its parameters) did to handles and entities."""
        code, objects = cmd.code, self
        if code == OTHER["ContextSave"]:
            objects.save(cmd.handles[0], out.take(out.left))
        elif code == OTHER["ContextLoad"] and handle is not None:
            r = cmd.reader()
            objects.load(r.take(r.left), handle, line)
        elif code == OTHER["Load"] and handle is not None:
            r = cmd.reader()
            r.tpm2b("inPrivate")
            objects.show(handle, read_public(r), line, "loaded by Load")
        elif code in (OTHER["CreatePrimary"], OTHER["CreateLoaded"]) and handle is not None:
            r = cmd.reader()
            r.tpm2b("inSensitive")
            template = read_public(r)  # the TPM fills in `unique`: the Name is in the answer
            out.tpm2b("outPublic" if code == OTHER["CreatePrimary"] else "outPrivate")
            if code == OTHER["CreatePrimary"]:
                out.tpm2b("creationData")
                out.tpm2b("creationHash")
                out.u16("creationTicket")
                out.u32("creationTicket")
                out.tpm2b("creationTicket")
            else:
                out.tpm2b("outPublic")
            objects.show(handle, template, line, "created by " + ("CreatePrimary" if code == OTHER["CreatePrimary"] else "CreateLoaded"),
                         name=out.tpm2b("name"))
        elif code == OTHER["LoadExternal"] and handle is not None:
            r = cmd.reader()
            r.tpm2b("inPrivate")
            objects.show(handle, read_public(r), line, "loaded by LoadExternal")
        elif code == OTHER["ReadPublic"]:
            objects.show(cmd.handles[0], read_public(out), line, "read by ReadPublic")
        elif code == OTHER["EvictControl"]:
            objects.evict(cmd.handles[1], cmd.reader().u32("persistentHandle"), line)
        elif code == OTHER["NV_DefineSpace"]:
            r = cmd.reader()
            r.tpm2b("auth")
            public = read_nv_public(r)
            objects.show(public.index, public, line, "defined by NV_DefineSpace")
        elif code == OTHER["NV_ReadPublic"]:
            objects.show(cmd.handles[0], read_nv_public(out), line, "read by NV_ReadPublic")
        elif code in (OTHER["NV_UndefineSpace"], OTHER["NV_UndefineSpaceSpecial"]):
            objects.flush(cmd.handles[1 if code == OTHER["NV_UndefineSpace"] else 0])

    def plain(self, code: int, command: bytes, response: bytes, line: int) -> bool:
        """:meth:`follow` for a command of :data:`PLAIN` in the plain shape
        (:func:`~swtpm_extcap.tpm.structures.plain`): read from fixed offsets, without
        the generic Command and Response a tpm2-tools session would build for every
        ContextSave and ContextLoad it runs. False (nothing done): a shape to leave to
        :meth:`follow` (cut off, a public area that does not parse)."""
        if code == _CONTEXT_LOAD:
            if len(response) < 14:
                return False
            self.load(command[10:], _U32.unpack_from(response, 10)[0], line)
            return True
        if len(command) < 14:
            return False
        handle = _U32.unpack_from(command, 10)[0]
        if code == _CONTEXT_SAVE:
            self.save(handle, response[10:])
        elif code == _READ_PUBLIC:
            try:
                public = read_public(Reader(response, 10))
            except Malformed:
                return False
            self.show(handle, public, line, "read by ReadPublic")
        else:
            return False
        return True

    def flush(self, handle: int) -> None:
        self.handles.pop(handle, None)

    def evict(self, handle: int, persistent: int, line: int) -> None:
        """EvictControl: a transient object made persistent, or a persistent one removed."""
        if handle >> 24 == HT_PERSISTENT:
            self.handles.pop(handle, None)
            return
        entity = self.handles.get(handle)
        if entity is not None:
            self.handles[persistent] = Entity(persistent, entity.public, line,
                                              "made persistent by EvictControl", entity.given_name)

    def save(self, handle: int, context: bytes) -> None:
        entity = self.handles.get(handle)
        if entity is not None:
            self._saved[context] = entity
            self._saved.move_to_end(context)
            while len(self._saved) > KEEP_CONTEXTS:
                self._saved.popitem(last=False)

    def load(self, context: bytes, handle: int, line: int) -> None:
        """ContextLoad: the saved object is back under ``handle`` (a session's context
        is the policy replay's, not an object's: left alone)."""
        if handle >> 24 in (HT_HMAC_SESSION, HT_POLICY_SESSION):
            return
        entity = self._saved.get(context)
        if entity is not None:
            # the object keeps where it was shown; its handle is the new one
            self.handles[handle] = Entity(handle, entity.public, entity.line, entity.how,
                                          entity.given_name)
        else:
            self.handles.pop(handle, None)

    def nv_set(self, index: int, bits: int) -> None:
        """An NV write or lock set attribute bits: the index's Name changes with them."""
        entity = self.handles.get(index)
        if entity is not None and isinstance(entity.public, NvPublic):
            if entity.public.attributes & bits != bits:
                self.handles[index] = replace(entity, public=entity.public.with_attributes(bits))

    def new_run(self) -> None:
        """TPM reset: transient objects are gone (persistent ones and NV indices stay)."""
        for handle in [h for h in self.handles if h >> 24 == HT_TRANSIENT]:
            del self.handles[handle]
