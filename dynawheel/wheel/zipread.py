"""The one place a wheel's zip is opened for reading, and its members checked before anyone reads them.

Wheels are untrusted input.  :func:`open_zip` turns everything :mod:`zipfile` may raise on a broken
central directory into a :class:`WheelFormatError` naming the wheel, and :func:`check_infos` refuses,
before any member is read, what a wheel may not hold (each error names the wheel and the member):

- a compression method other than stored (0), deflated (8), bzip2 (12) or LZMA (14) (zipfile reads
  only these; bzip2 and LZMA members, rare in wheels, are read only up to ``MAX_SMALL_METHOD`` bytes,
  since their ratio is unbounded, and junk in them is an error naming the member);
- the encryption flag (bit 0), or a "version needed to extract" above 6.3 (``MAX_EXTRACT_VERSION``);
- an empty name, or a name that is not UTF-8 under the UTF-8 flag (bit 11);
- an uncompressed size above ``MAX_MEMBER`` (a zip64 size field), a stored member whose two sizes
  differ, a deflated one that claims more than deflate can give (``MAX_RATIO``): nothing is ever
  allocated from a size field that the bytes in the file cannot back.

:func:`data_offset` reads a member's local header, checks that it names the same member as the
central directory and that the data lies in the file, and gives where the data starts.
:func:`read_member` reads one (small) member whole, with a size limit, and turns zip, CRC and
inflate errors into a :class:`WheelFormatError`.
"""

from __future__ import annotations

import lzma
import os
import struct
import zipfile
import zlib
from pathlib import Path

from ..errors import WheelFormatError
from .localheader import pread_data_offset

MAX_EXTRACT_VERSION = 63  # APPNOTE 6.3: what zipfile itself reads
MAX_MEMBER = 1 << 40  # bytes: no wheel member is bigger than 1 TiB; a bigger size is a broken header
MAX_RATIO = 1032  # deflate's best: 258 bytes from 2 bits (RFC 1951), plus block overhead
ALLOWED_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
SMALL_METHODS = (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)  # read through zipfile, whole: members up to MAX_SMALL_METHOD
MAX_SMALL_METHOD = 16 << 20
_UTF8_FLAG = 0x800
# what reading a member through zipfile may raise on bad data (bz2 raises OSError, lzma LZMAError)
READ_ERRORS = (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error, RuntimeError,
               struct.error, lzma.LZMAError)


def open_zip(path: str | os.PathLike[str]) -> zipfile.ZipFile:
    """The zip at `path`, its central directory read; every member checked (:func:`check_infos`)."""
    name = os.fspath(path)
    try:
        zf = zipfile.ZipFile(name)
    except FileNotFoundError:
        raise WheelFormatError(f"no such wheel: {name!r}") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, struct.error,
            UnicodeDecodeError, OverflowError) as exc:
        member = _culprit(name, exc)
        raise WheelFormatError(f"not a zip archive: {name!r}" + (f", member {member!r}" if member else "")
                               + f" ({_why(exc)})") from None
    try:
        check_infos(zf.infolist(), Path(name).name)
    except BaseException:
        zf.close()
        raise
    return zf


def _culprit(path: str, exc: BaseException) -> str | None:
    """The name of the member whose central directory record zipfile refused (too new a zip version,
    a name that is not UTF-8), found by walking the records again; None when not found."""
    if not isinstance(exc, (NotImplementedError, UnicodeDecodeError)):
        return None
    try:
        with open(path, "rb") as fp:
            end = zipfile._EndRecData(fp)  # type: ignore[attr-defined]
            if not end:
                return None
            size, offset = end[zipfile._ECD_SIZE], end[zipfile._ECD_OFFSET]  # type: ignore[attr-defined]
            fp.seek(offset)
            central = fp.read(min(size, 64 << 20))
    except (OSError, ValueError, struct.error):
        return None
    at = 0
    while central[at : at + 4] == b"PK\x01\x02" and at + 46 <= len(central):
        version, flags = struct.unpack_from("<HH", central, at + 6)
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", central, at + 28)
        raw = central[at + 46 : at + 46 + name_len]
        utf8 = flags & _UTF8_FLAG
        try:
            text = raw.decode("utf-8" if utf8 else "cp437")
            bad = isinstance(exc, NotImplementedError) and (version & 0xFF) > MAX_EXTRACT_VERSION
        except UnicodeDecodeError:
            text, bad = raw.decode("utf-8", "replace"), True
        if bad:
            return text
        at += 46 + name_len + extra_len + comment_len
    return None


def _why(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "a member name is not UTF-8 although its UTF-8 flag is set"
    if isinstance(exc, NotImplementedError):
        return f"unsupported zip feature: {exc}"
    return str(exc) or type(exc).__name__


def check_infos(infos: list[zipfile.ZipInfo], wheel: str) -> None:
    """Refuse members no reader of dynawheel may touch (see the module docstring)."""
    for info in infos:
        name = info.filename
        if not name or name == "/":
            raise WheelFormatError(f"{wheel!r}: a member has an empty name (central directory offset "
                                   f"{info.header_offset})")
        if info.compress_type not in ALLOWED_METHODS:
            raise WheelFormatError(f"{wheel!r}: member {name!r} uses compression method {info.compress_type} "
                                   "(only 0 stored, 8 deflated, 12 bzip2 and 14 LZMA are read)")
        if info.compress_type in SMALL_METHODS and info.file_size > MAX_SMALL_METHOD:
            raise WheelFormatError(f"{wheel!r}: member {name!r} claims {info.file_size} bytes compressed with method "
                                   f"{info.compress_type} (bzip2 and LZMA members are read up to {MAX_SMALL_METHOD})")
        if info.flag_bits & 0x1:
            raise WheelFormatError(f"{wheel!r}: member {name!r} is encrypted")
        if info.extract_version > MAX_EXTRACT_VERSION:
            raise WheelFormatError(f"{wheel!r}: member {name!r} needs zip version {info.extract_version / 10:.1f} "
                                   f"(at most {MAX_EXTRACT_VERSION / 10:.1f} is read)")
        if info.file_size > MAX_MEMBER or info.compress_size > MAX_MEMBER:
            raise WheelFormatError(f"{wheel!r}: member {name!r} claims {info.file_size} bytes")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise WheelFormatError(f"{wheel!r}: stored member {name!r} is {info.compress_size} bytes in the zip "
                                   f"but claims {info.file_size}")
        if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > MAX_RATIO * info.compress_size + 1024:
            raise WheelFormatError(f"{wheel!r}: deflated member {name!r} claims {info.file_size} bytes from "
                                   f"{info.compress_size} (deflate gives at most {MAX_RATIO} times its input)")
        if info.header_offset < 0:
            raise WheelFormatError(f"{wheel!r}: member {name!r} has a negative local header offset")


def data_offset(fd: int, info: zipfile.ZipInfo, wheel: str, length: int) -> int:
    """Where the stored bytes of `info` start in the zip open as `fd` (`length` bytes long); its
    local header must be there and name the same member as the central directory."""
    try:
        data = pread_data_offset(fd, info.header_offset, stored_name(info))
    except (EOFError, struct.error) as exc:
        raise WheelFormatError(f"{wheel!r}: bad local header for member {info.filename!r} ({exc})") from None
    if data + info.compress_size > length:
        raise WheelFormatError(f"{wheel!r}: member {info.filename!r} runs past the end of the file")
    return data


def stored_name(info: zipfile.ZipInfo) -> bytes:
    """The member's name as the central directory stores it."""
    raw = getattr(info, "orig_filename", info.filename)
    if raw.isascii():  # performance (12k members of torch checked by show): cp437 and UTF-8 agree on ASCII
        return raw.encode("ascii")
    if info.flag_bits & _UTF8_FLAG:
        return raw.encode("utf-8", "surrogateescape")
    try:
        return raw.encode("cp437")
    except UnicodeEncodeError:
        return raw.encode("utf-8", "surrogateescape")


def read_member(zf: zipfile.ZipFile, name: str, wheel: str, limit: int) -> bytes:
    """The member `name` whole (at most `limit` bytes: more is an error); CRC checked."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise WheelFormatError(f"{wheel!r} has no {name!r}") from None
    if info.file_size > limit:
        raise WheelFormatError(f"{wheel!r}: {name!r} is {info.file_size} bytes (the limit is {limit})")
    try:
        with zf.open(info) as fp:
            data = fp.read(limit + 1)
    except READ_ERRORS as exc:
        raise WheelFormatError(f"{wheel!r}: cannot read {name!r}: {exc}") from None
    if len(data) > limit:
        raise WheelFormatError(f"{wheel!r}: {name!r} is over {limit} bytes")
    return data
