"""Paths every PC of the cluster can reach, from the paths an engineer types on Windows.

A drive letter names something on *this* PC: ``C:`` its own disk, ``P:`` whatever share this
user mapped there (another share, or nothing, on a colleague's PC; nothing at all for a task
started at logon before the mapping). Before a path leaves the client, a mapped drive is
replaced by its share (``P:\\studies`` → ``\\\\fileserver\\projects\\studies``, as
``WNetGetConnectionW`` reports it), and a local drive is refused when other PCs will read it.
"""

from __future__ import annotations

import os
import sys
from pathlib import PureWindowsPath

NO_ERROR = 0
ERROR_MORE_DATA = 234
ERROR_CONNECTION_UNAVAIL = 1201  # mapped and remembered, not connected now: the name is still known
DRIVE_REMOTE = 4
DRIVE_KINDS = {0: "of unknown type", 1: "not a drive", 2: "a removable drive", 3: "a local disk",
               4: "a network drive", 5: "a CD/DVD drive", 6: "a RAM disk"}


class UnreachablePath(ValueError):
    """A path the cluster's other PCs cannot open."""


def drive_letter(path: str | os.PathLike) -> str | None:
    """``"P:"`` for a drive-letter path (``P:\\x``, ``p:/x``), ``None`` for UNC and POSIX paths."""
    drive = PureWindowsPath(os.fspath(path)).drive
    return drive.upper() if len(drive) == 2 and drive[1] == ":" else None


def mapped_share(drive: str, windll=None) -> tuple[str | None, int]:
    """The share mapped to ``drive`` (``\\\\server\\share``) and WNetGetConnectionW's code."""
    import ctypes
    from ctypes import wintypes

    windll = windll or ctypes.windll
    get = windll.mpr.WNetGetConnectionW
    get.argtypes = [wintypes.LPCWSTR, wintypes.LPWSTR, ctypes.POINTER(wintypes.DWORD)]
    get.restype = wintypes.DWORD
    size = wintypes.DWORD(260)
    for _ in range(2):
        buffer = ctypes.create_unicode_buffer(size.value)
        code = get(drive, buffer, ctypes.byref(size))
        if code != ERROR_MORE_DATA:  # else ``size`` now holds the length needed
            break
    if code in (NO_ERROR, ERROR_CONNECTION_UNAVAIL) and buffer.value.startswith("\\\\"):
        return buffer.value.rstrip("\\"), code
    return None, code


def drive_type(drive: str, windll=None) -> int:
    """GetDriveTypeW of ``drive``'s root (``DRIVE_*``)."""
    import ctypes
    from ctypes import wintypes

    windll = windll or ctypes.windll
    get = windll.kernel32.GetDriveTypeW
    get.argtypes, get.restype = [wintypes.LPCWSTR], wintypes.UINT
    return int(get(drive + "\\"))


def for_cluster(path: str | os.PathLike, *, other_pcs: bool, windll=None) -> str:
    """``path`` as the cluster's workers must be given it.

    On a Windows client a mapped drive becomes its share's UNC path; a path on this PC's own
    drives is kept for a cluster on this PC (``other_pcs=False``) and refused otherwise, naming
    the path and the drive. Elsewhere (and for UNC paths) the path is returned as it is.
    """
    text = os.fspath(path)
    if windll is None and sys.platform != "win32":
        return text
    drive = drive_letter(text)
    if drive is None:
        return text
    share, code = mapped_share(drive, windll)
    if share is not None:
        rest = PureWindowsPath(text).parts[1:]  # parts[0] is "P:\\"
        return str(PureWindowsPath(share, *rest))
    if not other_pcs:
        return text
    kind = drive_type(drive, windll)
    if kind == DRIVE_REMOTE:
        why = (f"{drive} is a network drive, but its share could not be read in this session "
               f"(WNetGetConnectionW error {code}: a drive mapped by another login, e.g. as administrator?)")
    else:
        why = f"{drive} is {DRIVE_KINDS.get(kind, 'a drive')} of this PC, which the cluster's other PCs cannot see"
    raise UnreachablePath(
        f"{text}: {why}. Put it on a share and give its \\\\server\\share\\... path (or a drive mapped to it)")
