"""Device side of AFC (Apple File Connection), serving one folder as the device file system.

Implements the opcodes pymobiledevice3's AfcService sends for stat, listdir, mkdir, rm,
rename, open/read/write/seek/tell/close, set-size and device info. Packets: a 40-byte
little-endian header (magic, entire_length, this_length, packet_num, operation) then the
payload; replies echo packet_num.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
from pathlib import Path

MAGIC = b"CFA6LPAA"
HEADER = struct.Struct("<8sQQQQ")

STATUS, DATA, READ_DIR, REMOVE_PATH, MAKE_DIR, GET_FILE_INFO, GET_DEVINFO = 0x01, 0x02, 0x03, 0x08, 0x09, 0x0A, 0x0B
FILE_OPEN, FILE_OPEN_RES, READ, WRITE, FILE_SEEK, FILE_TELL, FILE_TELL_RES = 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13
FILE_CLOSE, FILE_SET_SIZE, RENAME_PATH = 0x14, 0x15, 0x18

SUCCESS, UNKNOWN_PACKET_TYPE, INVALID_ARG, OBJECT_NOT_FOUND, OBJECT_IS_DIR, DIR_NOT_EMPTY = 0, 6, 7, 8, 9, 33
OPEN_MODES = {1: "rb", 2: "r+b", 3: "wb", 4: "w+b", 5: "ab", 6: "a+b"}


class Unplugged(Exception):
    """The simulated cable was pulled: the connection is dropped mid-transfer."""


class AfcServer:
    """One AFC session rooted at `root`. `device` carries the unplug budget and counters."""

    def __init__(self, root: Path, device) -> None:
        self.root = Path(root)
        self.device = device
        self.handles: dict[int, tuple[object, str]] = {}
        self.next_handle = 1

    def _path(self, remote: str) -> Path:
        parts = [p for p in remote.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise PermissionError(remote)
        return self.root.joinpath(*parts)

    def _rel(self, path: Path) -> str:
        return "/" + path.relative_to(self.root).as_posix()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    raw = await reader.readexactly(HEADER.size)
                except asyncio.IncompleteReadError:
                    return
                magic, entire, _this, packet_num, op = HEADER.unpack(raw)
                if magic != MAGIC:
                    return
                payload = await reader.readexactly(entire - HEADER.size) if entire > HEADER.size else b""
                try:
                    reply_op, body = self.handle(op, payload)
                except Unplugged:
                    writer.transport.abort()
                    return
                except FileNotFoundError:
                    reply_op, body = STATUS, struct.pack("<Q", OBJECT_NOT_FOUND)
                except IsADirectoryError:
                    reply_op, body = STATUS, struct.pack("<Q", OBJECT_IS_DIR)
                except OSError as exc:
                    code = DIR_NOT_EMPTY if exc.errno == 39 else INVALID_ARG
                    reply_op, body = STATUS, struct.pack("<Q", code)
                writer.write(HEADER.pack(MAGIC, HEADER.size + len(body), HEADER.size + len(body), packet_num, reply_op) + body)
                await writer.drain()
        finally:
            for fh, _ in self.handles.values():
                fh.close()

    @staticmethod
    def _cstrings(payload: bytes) -> list[str]:
        return payload.decode().split("\0")[:-1]

    def _ok(self) -> tuple[int, bytes]:
        return STATUS, struct.pack("<Q", SUCCESS)

    def handle(self, op: int, payload: bytes) -> tuple[int, bytes]:
        if op == GET_FILE_INFO:
            path = self._path(self._cstrings(payload)[0])
            st = path.stat()
            kind = "S_IFDIR" if path.is_dir() else "S_IFREG"
            info = {"st_size": st.st_size, "st_blocks": (st.st_size + 511) // 512, "st_nlink": st.st_nlink,
                    "st_ifmt": kind, "st_mtime": st.st_mtime_ns, "st_birthtime": st.st_mtime_ns}
            return DATA, "".join(f"{k}\0{v}\0" for k, v in info.items()).encode()
        if op == READ_DIR:
            path = self._path(self._cstrings(payload)[0])
            names = [".", "..", *sorted(os.listdir(path))]
            return DATA, "".join(n + "\0" for n in names).encode()
        if op == MAKE_DIR:
            self._path(self._cstrings(payload)[0]).mkdir(parents=True, exist_ok=True)
            return self._ok()
        if op == REMOVE_PATH:
            path = self._path(self._cstrings(payload)[0])
            path.rmdir() if path.is_dir() else path.unlink()
            return self._ok()
        if op == RENAME_PATH:
            src, dst = self._cstrings(payload)
            os.replace(self._path(src), self._path(dst))
            return self._ok()
        if op == GET_DEVINFO:
            usage = shutil.disk_usage(self.root)
            info = {"Model": self.device.product_type, "FSTotalBytes": usage.total,
                    "FSFreeBytes": self.device.free_bytes, "FSBlockSize": 4096}
            return DATA, "".join(f"{k}\0{v}\0" for k, v in info.items()).encode()
        if op == FILE_OPEN:
            (mode,) = struct.unpack_from("<Q", payload)
            remote = payload[8:].split(b"\0")[0].decode()
            path = self._path(remote)
            if mode == 2 and not path.exists():
                path.touch()
            fh = open(path, OPEN_MODES[mode])  # noqa: SIM115 - lives until FILE_CLOSE
            handle = self.next_handle
            self.next_handle += 1
            self.handles[handle] = (fh, self._rel(path))
            return FILE_OPEN_RES, struct.pack("<Q", handle)
        if op == READ:
            handle, size = struct.unpack_from("<QQ", payload)
            fh, _ = self.handles[handle]
            return DATA, fh.read(size)
        if op == WRITE:
            (handle,) = struct.unpack_from("<Q", payload)
            fh, rel = self.handles[handle]
            data = payload[8:]
            budget = self.device.unplug_after_bytes
            if budget is not None and len(data) >= budget:
                fh.write(data[:budget])  # what reached the flash before the cable came out
                fh.flush()
                self.device.count_write(rel, budget)
                self.device.unplug_after_bytes = None
                self.device.unplugs += 1
                raise Unplugged()
            if budget is not None:
                self.device.unplug_after_bytes = budget - len(data)
            if self.device.corrupt_writes.get(rel) and data:  # a transfer corrupted on the way
                self.device.corrupt_writes[rel] -= 1
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            fh.write(data)
            self.device.count_write(rel, len(data))
            return self._ok()
        if op == FILE_SEEK:
            handle, whence, offset = struct.unpack_from("<QQq", payload)
            self.handles[handle][0].seek(offset, whence)
            return self._ok()
        if op == FILE_TELL:
            (handle,) = struct.unpack_from("<Q", payload)
            return FILE_TELL_RES, struct.pack("<Q", self.handles[handle][0].tell())
        if op == FILE_SET_SIZE:
            handle, size = struct.unpack_from("<QQ", payload)
            self.handles[handle][0].truncate(size)
            return self._ok()
        if op == FILE_CLOSE:
            (handle,) = struct.unpack_from("<Q", payload)
            fh, _ = self.handles.pop(handle)
            fh.close()
            return self._ok()
        return STATUS, struct.pack("<Q", UNKNOWN_PACKET_TYPE)
