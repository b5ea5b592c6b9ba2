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
# A file that is no run's results (a geometry HDF): running the plan again cannot make it one.
NOT_RESULTS = "not-results"
# Results of HEC-RAS 5.0.x without the markers needed to vouch for them: neither a success
# (nothing says the run finished) nor worth a retry (5.0 would write the same file again).
UNJUDGED = "unjudged"
RETRYABLE = {INCOMPLETE, CORRUPT, MISSING}
# Verdicts on the model or its files, not on the machine that ran it (a worker's failure count).
NOT_THE_MACHINE = {FAILED, NOT_RESULTS, UNJUDGED}

QUOTE_CHARS = 300  # of a message line quoted in a reason
REASON_CHARS = 600  # the whole one-line reason, whatever the messages hold

_FAILURE_PATTERNS = [
    (re.compile(r"^.*went unstable.*$", re.I | re.M), "the messages say the model went unstable"),
    (re.compile(r"^.*Simulation Terminated.*$", re.I | re.M), "the messages say the simulation was terminated"),
    (re.compile(r"^\s*ERROR\b.*$", re.M), "the messages report an error"),
    (re.compile(r"^\s*Error with program:.*$", re.M), "a HEC-RAS program failed"),
    (re.compile(r"^.*Computations stopped by the user.*$", re.I | re.M), "the computations were stopped by the user"),
]
_FINISHED = re.compile(r"^\s*Finished (?:Unsteady|Steady) Flow Simulation\b.*$", re.I | re.M)
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


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
        """The most telling sentences, for a one-line status: under ``REASON_CHARS`` always, as it
        fills the dashboard's and the CLI's tables (``messages`` keeps the whole text)."""
        text = " ".join(self.reasons[:2])
        if len(text) > REASON_CHARS:
            text = self.reasons[0]
        return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


def tmp_path(hdf_path: Path) -> Path:
    """``NAME.p01.hdf`` → ``NAME.p01.tmp.hdf``."""
    name = hdf_path.name
    stem = name[:-4] if name.lower().endswith(".hdf") else name
    return hdf_path.with_name(stem + ".tmp.hdf")


def validate(hdf_path: str | Path, *, plan=None, engine: str | None = None) -> Validation:
    """Judge one run from its results HDF: succeeded, failed, incomplete, corrupt, missing,
    not-results (no run's results at all) or unjudged (HEC-RAS 5.0 results without the markers to judge by).

    ``engine="linux"``: a run of HEC-RAS's Linux engine, which is not Ras.exe and may not write
    Ras.exe's Computations Summary ('Complete Process'); the engine's own markers then vouch for
    it (``Completed Successfully = True`` and ``Finished Unsteady Flow Simulation``)."""
    path = Path(hdf_path)
    tmp = tmp_path(path)
    if not path.exists():
        if tmp.exists():
            return Validation(path, INCOMPLETE, [
                f"HEC-RAS left {tmp.name} and no {path.name}: the run stopped before it finished "
                "(killed, crashed or timed out)."])
        return Validation(path, MISSING, [f"No results file {path.name}: HEC-RAS wrote no results."])
    try:
        return _read(path, tmp, plan, engine)
    except Exception as e:  # a damaged file can fail anywhere inside h5py
        return Validation(path, CORRUPT, [f"{path.name} cannot be read as HDF5 (cut short or damaged): {e}."])


def _messages_file(path: Path) -> str:
    """Where HEC-RAS writes the whole compute messages beside ``NAME.pNN.hdf``."""
    stem = path.name[:-4] if path.name.lower().endswith(".hdf") else path.name
    return f"{stem}.computeMsgs.txt"


def _quote(line: str, path: Path, more: int = 0) -> str:
    """A message line quoted up to ``QUOTE_CHARS``, saying what was cut and where the whole is.

    A real 6.6 failure printed 2,457 face numbers on one ERROR line: quoted whole, it filled
    the dashboard and the CLI's failure table.
    """
    line = " ".join(line.split())
    head, notes = line, []
    if len(line) > QUOTE_CHARS:
        head = line[:QUOTE_CHARS]
        gap = max(head.rfind(" "), head.rfind(","))
        if gap > QUOTE_CHARS - 40:  # end on a whole word or number
            head = head[:gap]
        head = head.rstrip(" ,;")
        rest = line[len(head):]
        numbers = len(_NUMBER.findall(rest))
        mostly_numbers = numbers and len(_NUMBER.sub("", rest).strip(" ,;")) < len(rest) // 4
        notes.append(f"{numbers:,} more numbers cut" if mostly_numbers else f"{len(rest):,} more characters cut")
    if more:
        notes.append(f"{more:,} more line{'s' if more > 1 else ''} like it")
    if not notes:
        return f"'{line}'"
    return (f"'{head}{'…' if head != line else ''}' ({'; '.join(notes)}; the whole messages are in "
            f"{_messages_file(path)} and the results HDF's Compute Messages)")


def _major(version: str) -> int | None:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return None


def _read(path: Path, tmp: Path, plan, engine: str | None = None) -> Validation:
    import h5py

    reasons: list[str] = []
    with h5py.File(path, "r") as f:
        file_type = hdf.text(f.attrs.get("File Type", b"")).strip()
        version = hdf.version(f)
        has_results, has_plan = "Results" in f, "Plan Data/Plan Information" in f
        if not has_results and not has_plan:
            # decided by content: HEC-RAS 6.5 writes File Type "HEC-RAS Results" on geometry HDFs,
            # and 5.0.5+ writes "HEC-RAS Geometry" on plan results
            return Validation(path, NOT_RESULTS, [_not_results(path, f, file_type)], version)
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
        units = hdf.text(f.attrs.get("Units System", b"")).strip()

    status = SUCCEEDED
    for pattern, sentence in _FAILURE_PATTERNS:  # the messages' own words first: the most telling
        hits = [m.group(0) for m in pattern.finditer(messages)]
        if hits:
            status = FAILED
            reasons.append(f"{sentence[0].upper()}{sentence[1:]}: {_quote(hits[0], path, len(hits) - 1)}.")
    if completed.lower() == "false":
        status = FAILED
        reasons.append("HEC-RAS reports the run did not complete successfully (Completed Successfully = False).")
    for solution in filter(None, solutions):
        if "success" not in solution.lower():
            status = FAILED
            reasons.append(f"HEC-RAS reports: {_quote(solution, path)}.")
    limit = config.get("max-volume-error-percent")
    if volume is not None and limit is not None and abs(volume) > float(limit):
        status = FAILED
        reasons.append(f"The volume accounting error is {volume:.3g} %, above the limit of {float(limit):g} % "
                       "(hecras.max-volume-error-percent).")
    major = _major(version) if version else None
    if status == SUCCEEDED and major is not None and major < 6:
        return _judge_legacy(path, tmp, version, messages, completed, solutions, units, has_results,
                             run_seconds, volume)
    if status == SUCCEEDED:
        if not messages:
            status = INCOMPLETE
            reasons.append(f"{path.name} has no compute messages: the run did not finish writing results.")
        elif not complete and engine == "linux" and completed.lower() == "true" and _FINISHED.search(messages):
            reasons.append("Judged by the Linux engine's own markers (Completed Successfully = True, "
                           f"{_FINISHED.search(messages).group(0).strip()!r}): it writes no Computations Summary.")
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


def _not_results(path: Path, f, file_type: str) -> str:
    groups = list(f.keys())
    if "Geometry" in f:
        what = "a HEC-RAS geometry file (a Geometry group, no Results or Plan Data)"
    elif "geometry" in file_type.lower():
        what = f"a HEC-RAS geometry file (File Type {file_type!r}, no Results or Plan Data)"
    else:
        shown = ", ".join(groups[:5]) + (", …" if len(groups) > 5 else "")
        what = f"no HEC-RAS results (no Results or Plan Data; {'groups: ' + shown if groups else 'no groups'})"
    return f"{path.name} is {what}, not the results of a run: running again cannot make it one."


def _judge_legacy(path: Path, tmp: Path, version: str, messages: str, completed: str, solutions: list[str],
                  units: str, has_results: bool, run_seconds, volume) -> Validation:
    """HEC-RAS 5.0.x results, which no failure marker condemned.

    5.0 writes no Compute Processes table and may print no Computations Summary, so the 6.x
    test ('Complete Process' in the messages) would call every 5.0 run unfinished and retry it
    for ever. It is judged instead by two markers that 5.0 does write, one from the engine
    (``Completed Successfully = True`` or a successful ``Solution``) and one from the log
    (``Finished ... Flow Simulation`` or ``Complete Process``); with both, it succeeded. Short of
    that it is ``unjudged``: not ok (nothing vouches for the results) and not retryable (a
    second run would write the same markers). The results still land, to be checked by hand.
    """
    def done(status: str, reasons: list[str]) -> Validation:
        return Validation(path, status, reasons, version, run_seconds, volume, messages)

    if tmp.exists():
        return done(INCOMPLETE, [f"A leftover {tmp.name} shows the last run did not finish; "
                                 f"{path.name} is from an earlier run."])
    engine = ("Completed Successfully = True" if completed.lower() == "true"
              else next((f"Solution = {s!r}" for s in solutions if s and "success" in s.lower()), ""))
    finished = _FINISHED.search(messages)
    log = (repr(finished.group(0).strip()) if finished
           else "'Complete Process'" if hdf.complete_process_seconds(messages) is not None else "")
    if engine and log:
        took = f"; computations: {run_seconds:.1f} s by its own count" if run_seconds is not None else ""
        return done(SUCCEEDED, [f"HEC-RAS {version} completed the run (judged by the markers 5.0 writes: {engine} "
                                f"and {log} in the messages{took})."])
    found = [m for m in (engine, log and f"{log} in the messages", units and f"Units System = {units!r}") if m]
    missing = [m for m, have in (("a Results group", has_results), ("compute messages", bool(messages)),
                                 ("the engine's verdict (Completed Successfully or a Solution)", bool(engine)),
                                 ("a 'Finished ... Flow Simulation' line", bool(log))) if not have]
    return done(UNJUDGED, [
        f"HEC-RAS 5.0 files are read but not judged: {path.name} (HEC-RAS {version}) lacks "
        f"{', '.join(missing)}{'; it has ' + ', '.join(found) if found else ''}. Nothing says the run "
        "failed or finished: check its messages; running again would write the same file."])
