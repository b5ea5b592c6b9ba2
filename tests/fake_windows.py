"""Windows behaviour, made to happen on Linux: a stand-in for ``ctypes.windll`` whose functions
behave as the real ones do at the C boundary (struct sizes checked as on 64-bit Windows, return
values converted by the ``restype`` the caller declared, ``int`` when it declared none)."""

from __future__ import annotations

import ctypes


class FakeFunction:
    """One DLL function: ``impl`` gets the arguments as ctypes passes them and returns the C value."""

    def __init__(self, impl):
        self.impl = impl
        self.argtypes = None
        self.restype = ctypes.c_int  # ctypes' default for a foreign function
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        if self.argtypes is None:  # ctypes passes a Python int as a C int unless told otherwise
            for a in args:
                if isinstance(a, int) and not -2**31 <= a < 2**31:
                    raise ctypes.ArgumentError("argument: <class 'OverflowError'>: int too long to convert")
        raw = self.impl(*args)
        return self.restype(raw).value if self.restype is not None else None


class FakeDll:
    def __init__(self, **functions):
        for name, impl in functions.items():
            setattr(self, name, FakeFunction(impl))


class FakeWindll:
    """``user32.GetLastInputInfo`` and ``kernel32.GetTickCount`` of a PC up for ``uptime_ms``
    whose last input came ``idle_ms`` ago (both 32-bit tick counts, as Windows keeps them)."""

    LASTINPUTINFO_SIZE = 8  # UINT cbSize + DWORD dwTime

    def __init__(self, uptime_ms: int, idle_ms: int):
        self.uptime_ms, self.idle_ms = uptime_ms, idle_ms
        self.user32 = FakeDll(GetLastInputInfo=self._last_input)
        self.kernel32 = FakeDll(GetTickCount=lambda: self.uptime_ms & 0xFFFFFFFF)

    def _last_input(self, pinfo) -> int:
        info = pinfo._obj  # ctypes.byref(...) hands the structure over
        if info.cbSize != self.LASTINPUTINFO_SIZE:
            return 0  # FALSE: Windows checks cbSize
        info.dwTime = (self.uptime_ms - self.idle_ms) & 0xFFFFFFFF
        return 1


class FakeDrives:
    """``mpr.WNetGetConnectionW`` and ``kernel32.GetDriveTypeW`` of a PC whose drives are
    ``{"C:": 3, "P:": 4, ...}`` (``DRIVE_*``) and whose user mapped ``{"P:": "\\\\fs\\projects"}``;
    ``remembered`` drives are mapped but not connected now (ERROR_CONNECTION_UNAVAIL)."""

    def __init__(self, types: dict[str, int], mapped: dict[str, str], remembered: tuple[str, ...] = ()):
        self.types, self.mapped, self.remembered = types, mapped, remembered
        self.mpr = FakeDll(WNetGetConnectionW=self._connection)
        self.kernel32 = FakeDll(GetDriveTypeW=self._drive_type)

    def _connection(self, local: str, buffer, plength) -> int:
        size = plength._obj  # the DWORD ctypes.byref hands over: the buffer's size in characters
        if local.upper() not in self.mapped:
            return 2250  # ERROR_NOT_CONNECTED: not a redirected device
        remote = self.mapped[local.upper()]
        if size.value < len(remote) + 1:
            size.value = len(remote) + 1
            return 234  # ERROR_MORE_DATA: the size needed is in *lpnLength
        buffer.value = remote
        return 1201 if local.upper() in self.remembered else 0

    def _drive_type(self, root: str) -> int:
        if len(root) != 3 or not root.endswith(":\\"):
            return 1  # DRIVE_NO_ROOT_DIR: Windows wants "X:\\"
        return self.types.get(root[:2].upper(), 1)


class FakeJobs:
    """``kernel32``'s Job Object calls, acting on real processes: ``handles`` maps the process
    handles the caller passes (``Popen._handle`` on Windows) to pids. Closing a kill-on-close job
    kills every process in it (a member's children join its job, as on Windows). Sizes and
    offsets are checked as 64-bit Windows lays them out."""

    EXTENDED_LIMIT_SIZE = 144  # JOBOBJECT_EXTENDED_LIMIT_INFORMATION on 64-bit Windows
    LIMIT_FLAGS_OFFSET = 16  # after two LARGE_INTEGERs
    KILL_ON_JOB_CLOSE = 0x2000

    def __init__(self, handles: dict[int, int], nesting_refused: bool = False):
        self.handles, self.nesting_refused = handles, nesting_refused
        self.jobs: dict[int, dict] = {}
        self.kernel32 = FakeDll(CreateJobObjectW=self._create, SetInformationJobObject=self._set,
                                AssignProcessToJobObject=self._assign, CloseHandle=self._close)

    def _create(self, attributes, name) -> int:
        handle = 0x7FF4_0000_0100 + 8 * len(self.jobs)  # past 2**31: a handle cut to a C int is wrong
        self.jobs[handle] = {"flags": 0, "pids": []}
        return handle

    def _set(self, job, info_class, pinfo, size) -> int:
        info = pinfo._obj
        if job not in self.jobs or info_class != 9 or size != self.EXTENDED_LIMIT_SIZE or ctypes.sizeof(info) != size:
            return 0  # FALSE: ERROR_BAD_LENGTH / ERROR_INVALID_HANDLE
        raw = ctypes.string_at(ctypes.addressof(info) + self.LIMIT_FLAGS_OFFSET, 4)
        self.jobs[job]["flags"] = int.from_bytes(raw, "little")
        return 1

    def _assign(self, job, process) -> int:
        if job not in self.jobs or process not in self.handles or self.nesting_refused:
            return 0
        self.jobs[job]["pids"].append(self.handles[process])
        return 1

    def _close(self, handle) -> int:
        import psutil

        job = self.jobs.pop(handle, None)
        if job is None:
            return 0
        if job["flags"] & self.KILL_ON_JOB_CLOSE:
            members = []
            for pid in job["pids"]:
                try:
                    root = psutil.Process(pid)
                    members += [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
            for p in members:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(members, timeout=10)
        return 1


class FakeWindow:
    """A top-level window: its handle, class name, title, owning process and visibility."""

    def __init__(self, hwnd: int, class_name: str, title: str, pid: int, visible: bool = True):
        self.hwnd, self.class_name, self.title, self.pid, self.visible = hwnd, class_name, title, pid, visible


class FakeDesktop:
    """``user32``'s window enumeration over ``windows`` (in z-order), acting at the C boundary
    as the real functions do: ``EnumWindows`` calls the caller's ctypes callback (checked to have
    ``WNDENUMPROC``'s layout: a 4-byte BOOL result, pointer-sized HWND and LPARAM) with each
    handle until it returns 0; ``GetWindowThreadProcessId`` writes the 4-byte pid at the address
    it is given and returns a thread id; ``GetClassNameW``/``GetWindowTextW`` copy at most
    ``nMaxCount - 1`` characters and a NUL into the buffer at the address given and return the
    characters copied (0 for a handle that names no window). ``broken`` names a function that
    fails (raises ``OSError``, as ``ctypes.WinError`` would be raised by a wrapper)."""

    POINTER_SIZE = ctypes.sizeof(ctypes.c_void_p)

    def __init__(self, windows: list[FakeWindow], broken: str | None = None):
        self.windows = {w.hwnd: w for w in windows}
        self.order = [w.hwnd for w in windows]
        functions = dict(EnumWindows=self._enum, IsWindowVisible=self._visible, GetClassNameW=self._class_name,
                         GetWindowTextLengthW=self._text_length, GetWindowTextW=self._text,
                         GetWindowThreadProcessId=self._process_id)
        if broken is not None:
            def fail(*args):
                raise OSError(22, f"{broken} failed (fake)")
            functions[broken] = fail
        self.user32 = FakeDll(**functions)

    def _enum(self, callback, lparam) -> int:
        assert isinstance(callback, ctypes._CFuncPtr), "EnumWindows takes a C function pointer"
        assert ctypes.sizeof(callback._restype_) == 4, "WNDENUMPROC returns a BOOL (4 bytes)"
        assert [ctypes.sizeof(t) for t in callback._argtypes_] == [self.POINTER_SIZE] * 2, "WNDENUMPROC(HWND, LPARAM)"
        for hwnd in list(self.order):
            if not callback(hwnd, lparam):
                return 0  # "If EnumWindowsProc returns zero, the return value is also zero"
        return 1

    def _window(self, hwnd):
        return self.windows.get(hwnd) if isinstance(hwnd, int) else None

    def _visible(self, hwnd) -> int:
        w = self._window(hwnd)
        return int(w is not None and w.visible)

    @staticmethod
    def _address(pointer) -> int:
        """The address a ``byref``/``pointer``/array argument carries (0 for NULL)."""
        if pointer is None:
            return 0
        return ctypes.cast(pointer, ctypes.c_void_p).value or 0

    def _process_id(self, hwnd, lpdw_process_id) -> int:
        w = self._window(hwnd)
        if w is None:
            return 0
        address = self._address(lpdw_process_id)
        if address:
            target = getattr(lpdw_process_id, "_obj", None)
            if target is not None:  # byref: the object must hold a DWORD, or Windows writes past it
                assert ctypes.sizeof(target) >= 4, "GetWindowThreadProcessId writes a 4-byte DWORD"
            ctypes.c_uint32.from_address(address).value = w.pid
        return 0x1000 + w.pid % 0x1000  # the thread id

    def _copy(self, text: str, buffer, max_count: int) -> int:
        if max_count <= 0:
            return 0
        width = ctypes.sizeof(ctypes.c_wchar)
        assert ctypes.sizeof(buffer) >= max_count * width, "nMaxCount larger than the buffer: Windows writes past it"
        copied = text[:max_count - 1]
        source = ctypes.create_unicode_buffer(copied, len(copied) + 1)
        ctypes.memmove(self._address(buffer), source, (len(copied) + 1) * width)
        return len(copied)

    def _class_name(self, hwnd, buffer, max_count) -> int:
        w = self._window(hwnd)
        return 0 if w is None else self._copy(w.class_name, buffer, max_count)

    def _text_length(self, hwnd) -> int:
        w = self._window(hwnd)
        return 0 if w is None else len(w.title)

    def _text(self, hwnd, buffer, max_count) -> int:
        w = self._window(hwnd)
        return 0 if w is None else self._copy(w.title, buffer, max_count)


def delete_like_windows(monkeypatch) -> None:
    """``os.unlink``/``os.remove`` refuse a file whose read-only attribute is set (here: no write
    bit for its owner), as ``DeleteFileW`` does; POSIX, and root above all, would delete it."""
    import os
    import stat

    real_unlink = os.unlink

    def unlink(path, *, dir_fd=None):
        mode = os.stat(path, dir_fd=dir_fd, follow_symlinks=False).st_mode
        if stat.S_ISREG(mode) and not mode & stat.S_IWRITE:
            raise PermissionError(13, "Access is denied", str(path))
        return real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    monkeypatch.setattr(os, "remove", unlink)


# --------------------------------------------------------------------------- files in use

IN_USE = "The process cannot access the file because it is being used by another process"


def held_open(path) -> bool:
    """Whether any process (this one too) has a file at or under ``path`` open, or its working
    folder there: what makes Windows refuse to rename or delete it (no FILE_SHARE_DELETE)."""
    import os

    target = os.path.realpath(path)
    inside = target.rstrip("/") + "/"
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            if cwd == target or cwd.startswith(inside):
                return True
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                held = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if (held == target or held.startswith(inside)) and os.path.isfile(held):
                return True
    return False


def files_in_use_like_windows(patch=None) -> None:
    """``os.replace``/``rename``/``unlink``/``remove``/``rmdir`` refuse a file that some process
    holds open, or a folder with such a file in it, with the ``PermissionError`` Windows raises
    (WinError 32), and a landing swaps folders by two renames, as it must on Windows.
    ``patch(module, name, value)`` defaults to ``setattr`` (for a worker preload)."""
    import os

    patch = patch or setattr
    real = {name: getattr(os, name) for name in ("replace", "rename", "unlink", "remove", "rmdir")}

    def where(path, dir_fd):
        return os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path) if dir_fd is not None else path

    def refuse(path):
        e = PermissionError(13, IN_USE, os.fspath(path))
        e.winerror = 32
        return e

    def moving(name):
        def move(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
            if held_open(where(src, src_dir_fd)):
                raise refuse(src)
            if os.path.isfile(where(dst, dst_dir_fd)) and held_open(where(dst, dst_dir_fd)):
                raise refuse(dst)
            return real[name](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        return move

    def removing(name):
        def remove(path, *, dir_fd=None):
            if held_open(where(path, dir_fd)):
                raise refuse(path)
            return real[name](path, dir_fd=dir_fd)
        return remove

    for name in ("replace", "rename"):
        patch(os, name, moving(name))
    for name in ("unlink", "remove", "rmdir"):
        patch(os, name, removing(name))
    from dask_hecras import landing

    patch(landing, "_exchange", lambda a, b: False)  # Windows swaps no folders in one step: two renames


def dask_setup(worker) -> None:
    """``dask worker --preload tests.fake_windows``: this worker's files behave as on Windows."""
    files_in_use_like_windows()
