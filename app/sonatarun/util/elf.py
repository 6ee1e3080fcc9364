"""The shared libraries an ELF file asks the loader for (its DT_NEEDED entries), read without loading it.

Loading is what we must avoid: a NEST built without MPI ends the process when it is
imported under an MPI launcher with several ranks, so whether it was built with MPI has to
be read from its file first. Only 64-bit little-endian ELF (every platform NEST's wheels and
our images run on) is understood; anything else gives an empty list.
"""
from __future__ import annotations

import struct
from pathlib import Path

_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_NEEDED, _DT_STRTAB = 0, 1, 5


def needed_libraries(path: Path | str) -> list[str]:
    """The sonames ``path`` links against, in file order ([] if it is not a 64-bit LE ELF)."""
    with open(path, "rb") as fh:
        head = fh.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return []
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
        loads, dynamic = [], None
        for i in range(phnum):
            p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = struct.unpack_from("<IIQQQQQQ", table, i * phentsize)
            if p_type == _PT_LOAD:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == _PT_DYNAMIC:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return []
        fh.seek(dynamic[0])
        raw = fh.read(dynamic[1])
        needed, strtab = [], None
        for off in range(0, len(raw) - 15, 16):
            tag, val = struct.unpack_from("<qQ", raw, off)
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                needed.append(val)
            elif tag == _DT_STRTAB:
                strtab = val
        if strtab is None:
            return []
        base = next((o + strtab - v for v, o, n in loads if v <= strtab < v + n), None)
        if base is None:
            return []
        names = []
        for rel in needed:
            fh.seek(base + rel)
            names.append(fh.read(256).split(b"\0", 1)[0].decode("utf-8", "replace"))
        return names
