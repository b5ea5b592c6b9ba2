"""Which plan is which, and whether landed results are still those of the plan on disk.

A plan is its project file's full path plus its plan id (``records.project_key``), never the
project's name: two studies may both have a ``River.prj``. Its *fingerprint* summarises the
input files a run would stage. It is recorded when the results land; a plan counts as already
done only while its fingerprint is unchanged, so an edited plan (or flow, geometry, terrain)
runs again.

The text files that define a run (plan, geometry, flow, project, RAS Mapper file) count by
content; the others (geometry HDF, terrain, DSS, restart, projection) by size and
modification time, which an edit changes and which is cheap on a network share. The
project file's ``Current Plan=`` line is left out: HEC-RAS rewrites it whenever someone
selects another plan.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .project import InputFile, Plan

BY_CONTENT = ("project", "plan", "geometry", "flow", "rasmap")


def _entry(f: InputFile, folder: Path) -> str:
    try:
        rel = os.path.relpath(f.path, folder)
    except ValueError:  # another drive
        rel = str(f.path)
    rel = rel.replace("\\", "/").lower()
    st = f.path.stat()
    if f.role in BY_CONTENT:
        data = f.path.read_bytes()
        if f.role == "project":
            data = b"\n".join(line for line in data.splitlines() if not line.startswith(b"Current Plan="))
        return f"{f.role}|{rel}|{hashlib.sha256(data).hexdigest()}"
    return f"{f.role}|{rel}|{st.st_size}|{int(st.st_mtime)}"


def fingerprint(plan: Plan, inputs: list[InputFile] | None = None, memo: dict | None = None) -> str:
    """A short hash of ``plan``'s input files (see the module's doc).

    ``memo`` (a dict kept across calls) reads each file once when many plans share it.
    """
    memo = {} if memo is None else memo
    lines = []
    for f in inputs if inputs is not None else plan.inputs():
        key = (f.path, f.role, plan.folder)
        if key not in memo:
            memo[key] = _entry(f, plan.folder)
        lines.append(memo[key])
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:20]
