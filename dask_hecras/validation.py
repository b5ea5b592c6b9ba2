"""Did HEC-RAS really finish? Decided from the results HDF, never from the exit code.

HEC-RAS can exit 0 after a failed run, and a killed run leaves ``NAME.pNN.tmp.hdf``.
``validate`` reads a handful of attributes and the compute messages (never the big
arrays) and never raises on a bad file: a bad file is a status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import config, hdf

SUCCEEDED, FAILED, INCOMPLETE, CORRUPT, MISSING = "succeeded", "failed", "incomplete", "corrupt", "missing"
RETRYABLE = {INCOMPLETE, CORRUPT, MISSING}

_FAILURE_PATTERNS = [
    (re.compile(r"^.*went unstable.*$", re.I | re.M), "the messages say the model went unstable"),
    (re.compile(r"^.*Simulation Terminated.*$", re.I | re.M), "the messages say the simulation was terminated"),
    (re.compile(r"^\s*ERROR\b.*$", re.M), "the messages report an error"),
    (re.compile(r"^\s*Error with program:.*$", re.M), "a HEC-RAS program failed"),
    (re.compile(r"^.*Computations stopped by the user.*$", re.I | re.M), "the computations were stopped by the user"),
]


@dataclass
class Validation:
    """What a results file says about its run. Small and picklable."""

    path: Path
    status: str
    reasons: list[str] = field(default_factory=list)
    version: str = ""
    run_seconds: float | None = None
    volume_error_percent: float | None = None
    messages: str = ""

    @property
    def ok(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def retryable(self) -> bool:
        """Running again can help: the run was cut short, not judged a failure by HEC-RAS."""
        return self.status in RETRYABLE

    @property
    def reason(self) -> str:
        """The most telling sentences, for a one-line status."""
        return " ".join(self.reasons[:2])


def tmp_path(hdf_path: Path) -> Path:
    """``NAME.p01.hdf`` → ``NAME.p01.tmp.hdf``."""
    name = hdf_path.name
    stem = name[:-4] if name.lower().endswith(".hdf") else name
    return hdf_path.with_name(stem + ".tmp.hdf")


def validate(hdf_path: str | Path, *, plan=None) -> Validation:
    """Judge one run from its results HDF: succeeded, failed, incomplete, corrupt or missing."""
    path = Path(hdf_path)
    tmp = tmp_path(path)
    if not path.exists():
        if tmp.exists():
            return Validation(path, INCOMPLETE, [
                f"HEC-RAS left {tmp.name} and no {path.name}: the run stopped before it finished "
                "(killed, crashed or timed out)."])
        return Validation(path, MISSING, [f"No results file {path.name}: HEC-RAS wrote no results."])
    try:
        return _read(path, tmp, plan)
    except Exception as e:  # a damaged file can fail anywhere inside h5py
        return Validation(path, CORRUPT, [f"{path.name} cannot be read as HDF5 (cut short or damaged): {e}."])


def _read(path: Path, tmp: Path, plan) -> Validation:
    import h5py

    reasons: list[str] = []
    with h5py.File(path, "r") as f:
        file_type = hdf.text(f.attrs.get("File Type", b"")).strip()
        version = hdf.version(f)
        if file_type and "Results" not in file_type:
            return Validation(path, CORRUPT, [f"{path.name} is a {file_type!r} file, not HEC-RAS results."], version)
        written_for = hdf.plan_information(f).get("Plan Filename", "")
        if plan is not None and written_for and written_for.lower() != plan.file.name.lower():
            return Validation(path, CORRUPT, [
                f"{path.name} holds results of {written_for}, not of {plan.file.name}."], version)
        messages = hdf.compute_messages(f)
        run_seconds = hdf.run_seconds(f, messages)
        volume = hdf.volume_error_percent(f, messages)
        completed = hdf.attr(f, "Event Conditions", "Completed Successfully")
        solutions = [hdf.attr(f, g, "Solution") for g in ("Results/Unsteady/Summary", "Results/Steady/Summary")]
        complete = hdf.complete_process_seconds(messages) is not None

    status = SUCCEEDED
    for pattern, sentence in _FAILURE_PATTERNS:  # the messages' own words first: the most telling
        hit = pattern.search(messages)
        if hit:
            status = FAILED
            reasons.append(f"{sentence[0].upper()}{sentence[1:]}: {hit.group(0).strip()!r}.")
    if completed.lower() == "false":
        status = FAILED
        reasons.append("HEC-RAS reports the run did not complete successfully (Completed Successfully = False).")
    for solution in filter(None, solutions):
        if "success" not in solution.lower():
            status = FAILED
            reasons.append(f"HEC-RAS reports: {solution}.")
    limit = config.get("max-volume-error-percent")
    if volume is not None and limit is not None and abs(volume) > float(limit):
        status = FAILED
        reasons.append(f"The volume accounting error is {volume:.3g} %, above the limit of {float(limit):g} % "
                       "(hecras.max-volume-error-percent).")
    if status == SUCCEEDED:
        if not messages:
            status = INCOMPLETE
            reasons.append(f"{path.name} has no compute messages: the run did not finish writing results.")
        elif not complete:
            status = INCOMPLETE
            reasons.append("The compute messages do not end with 'Complete Process': the run did not finish.")
        elif not completed:
            status = INCOMPLETE
            reasons.append("No 'Completed Successfully' flag under Event Conditions.")
        elif tmp.exists():
            status = INCOMPLETE
            reasons.append(f"A leftover {tmp.name} shows the last run did not finish; {path.name} is from an earlier run.")
    if status == SUCCEEDED:
        # HEC-RAS's own count of its computing time: less than the run's wall time (start-up,
        # geometry pre-processing, writing), so it is said as what it is
        took = f" (computations: {run_seconds:.1f} s by its own count)" if run_seconds is not None else ""
        reasons.append(f"HEC-RAS {version} completed the run{took}.".replace("  ", " "))
    return Validation(path, status, reasons, version, run_seconds, volume, messages)
