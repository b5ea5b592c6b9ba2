"""Which dialog boxes an engine has open (Windows): what a run that stopped moving waits on.

Ras.exe is a GUI program: a modal dialog (the licence terms on a first run, some errors) stops
it for ever without a word in any file. When a run stalls, the titles of the dialog boxes its
processes own say why (see :class:`dask_hecras.progress.RunWatch`). Nothing here clicks or
closes anything: it only reads window titles.
"""

from __future__ import annotations

import ctypes
from typing import Iterable

DIALOG_CLASS = "#32770"  # the window class of Windows' standard dialog boxes (MessageBox, dialog templates)

# Windows' types, with their Windows sizes whatever the OS (tests run the code against a fake user32).
BOOL = ctypes.c_int
DWORD = ctypes.c_uint32
HWND = ctypes.c_void_p
LPARAM = ctypes.c_ssize_t  # LONG_PTR
LPWSTR = ctypes.c_wchar_p
INT = ctypes.c_int


def _prototype():
    """``WNDENUMPROC``: ``BOOL CALLBACK EnumWindowsProc(HWND, LPARAM)``, stdcall on Windows
    (``WINFUNCTYPE``; elsewhere, for tests, the C convention)."""
    factory = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE)
    return factory(BOOL, HWND, LPARAM)


def _declare(user32, WNDENUMPROC) -> None:
    functions = {
        "EnumWindows": ([WNDENUMPROC, LPARAM], BOOL),
        "IsWindowVisible": ([HWND], BOOL),
        "GetClassNameW": ([HWND, LPWSTR, INT], INT),
        "GetWindowTextLengthW": ([HWND], INT),
        "GetWindowTextW": ([HWND, LPWSTR, INT], INT),
        "GetWindowThreadProcessId": ([HWND, ctypes.POINTER(DWORD)], DWORD),
    }
    for name, (argtypes, restype) in functions.items():
        function = getattr(user32, name)
        function.argtypes, function.restype = argtypes, restype


def open_dialogs(pids: Iterable[int], user32=None) -> list[str]:
    """Titles of the visible top-level dialog boxes (class ``#32770``) owned by one of ``pids``
    (the engine's process tree), in Windows' z-order. ``user32`` defaults to
    ``ctypes.windll.user32``. Never raises: anywhere it cannot look (not Windows, a failing
    call), the answer is ``[]``."""
    try:
        wanted = {int(pid) for pid in pids}
        if not wanted:
            return []
        if user32 is None:
            user32 = ctypes.windll.user32  # AttributeError off Windows: caught below
        WNDENUMPROC = _prototype()
        _declare(user32, WNDENUMPROC)
        titles: list[str] = []
        failed: list[BaseException] = []

        def visit(hwnd, _lparam) -> int:
            # An exception must not cross the C boundary (ctypes would print it and go on):
            # it is kept, and ends the enumeration.
            try:
                if not hwnd or not user32.IsWindowVisible(hwnd):
                    return 1
                pid = DWORD(0)
                user32.GetWindowThreadProcessId(hwnd, ctypes.byref(pid))
                if pid.value not in wanted:
                    return 1
                name = ctypes.create_unicode_buffer(256)
                if not user32.GetClassNameW(hwnd, name, len(name)) or name.value != DIALOG_CLASS:
                    return 1
                length = user32.GetWindowTextLengthW(hwnd)
                text = ctypes.create_unicode_buffer(max(0, length) + 1)
                user32.GetWindowTextW(hwnd, text, len(text))
                titles.append(text.value)
                return 1
            except Exception as e:  # noqa: BLE001 - reported after the enumeration
                failed.append(e)
                return 0

        callback = WNDENUMPROC(visit)  # kept referenced until EnumWindows returns
        user32.EnumWindows(callback, 0)
        if failed:
            return []
        return titles
    except Exception:
        return []
