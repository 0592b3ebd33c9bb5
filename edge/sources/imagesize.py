"""An image file's width and height from its header, without decoding it: PNG (IHDR),
JPEG (the SOF segment), BMP, WebP (VP8, VP8L, VP8X) and TIFF (the first IFD).

ImageFiles checks the pixel count before OpenCV decodes a file, so a header that claims
100000x100000 pixels, or a small file that inflates to gigabytes (a PNG bomb), is
skipped instead of taking the daemon's memory. At most :data:`MAX_HEADER_READ` bytes are
read (JPEG segments are skipped by their length, not read).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

MAX_HEADER_READ = 1 << 20  # bytes a JPEG scan may skip through before giving up
MAX_JPEG_SEGMENTS = 512
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # DHT, JPG and DAC are not SOFn
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM carry no length


class ImageHeaderError(ValueError):
    """The file's header is not one of the formats read here, or is cut or inconsistent."""


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header of the image at ``path``; ImageHeaderError when it
    cannot be told (OSError when the file cannot be read)."""
    with path.open("rb") as file:
        head = file.read(32)
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png(head)
        if head.startswith(b"\xff\xd8"):
            return _jpeg(file)
        if head.startswith(b"BM"):
            return _bmp(head)
        if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
            return _webp(head)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(file, head)
    raise ImageHeaderError("not a PNG, JPEG, BMP, WebP or TIFF file")


def _png(head: bytes) -> tuple[int, int]:
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise ImageHeaderError("a PNG without its IHDR chunk first")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _jpeg(file: BinaryIO) -> tuple[int, int]:
    file.seek(2)
    for _ in range(MAX_JPEG_SEGMENTS):
        if file.tell() > MAX_HEADER_READ:
            break
        byte = file.read(1)
        while byte == b"\xff":  # fill bytes before a marker
            byte = file.read(1)
        if not byte:
            raise ImageHeaderError("a JPEG cut before its frame header (SOF)")
        marker = byte[0]
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no SOF came first
            break
        length = file.read(2)
        if len(length) < 2 or (size := struct.unpack(">H", length)[0]) < 2:
            raise ImageHeaderError("a JPEG segment with a bad length")
        if marker in _SOF:
            body = file.read(5)
            if len(body) < 5:
                raise ImageHeaderError("a JPEG cut inside its frame header (SOF)")
            height, width = struct.unpack(">HH", body[1:5])
            return width, height
        file.seek(size - 2, 1)
    raise ImageHeaderError("a JPEG without a frame header (SOF) where one belongs")


def _bmp(head: bytes) -> tuple[int, int]:
    if len(head) < 26:
        raise ImageHeaderError("a BMP cut inside its header")
    (header_size,) = struct.unpack("<I", head[14:18])
    if header_size == 12:  # BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", head[18:22])
        return width, height
    width, height = struct.unpack("<ii", head[18:26])
    return abs(width), abs(height)  # a negative height is a top-down bitmap


def _webp(head: bytes) -> tuple[int, int]:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    raise ImageHeaderError("a WebP without a VP8, VP8L or VP8X chunk first")


def _tiff(file: BinaryIO, head: bytes) -> tuple[int, int]:
    order = "<" if head[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", head[4:8])
    file.seek(offset)
    raw = file.read(2)
    if len(raw) < 2:
        raise ImageHeaderError("a TIFF whose first IFD is past its end")
    (entries,) = struct.unpack(order + "H", raw)
    table = file.read(12 * entries)
    sizes: dict[int, int] = {}
    for at in range(0, len(table) - 11, 12):
        tag, kind = struct.unpack(order + "HH", table[at : at + 4])
        if tag in (256, 257) and kind in (3, 4):  # ImageWidth, ImageLength: SHORT or LONG
            fmt = order + ("H" if kind == 3 else "I")
            sizes[tag] = struct.unpack(fmt, table[at + 8 : at + 8 + struct.calcsize(fmt)])[0]
    if 256 not in sizes or 257 not in sizes:
        raise ImageHeaderError("a TIFF without ImageWidth and ImageLength in its first IFD")
    return sizes[256], sizes[257]
