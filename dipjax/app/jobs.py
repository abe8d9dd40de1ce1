"""The page's jobs: each one a command-line run folder under the runs folder, run one at a time
by a worker thread that calls ``dipjax.fit.main`` with the argv a command-line user would type.

A job folder ``RUNS/<id>/`` is the run's ``--out`` (run.json, output.png, summary.json, ...,
``checkpoint/`` while it can be resumed) plus what the page adds: ``job.json`` (the argv, the
client's file name for display, the status), ``inputs/`` (the uploaded image and mask),
``preview.png`` (the moving average of the outputs at the last checkpoint) and ``log.txt`` (the
command's messages). Restarting the server reads the folders back.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import json
import pathlib
import re
import secrets
import threading
import time
from typing import Optional

import numpy as np

from dipjax.io import atomic_write_bytes, save_png

JOB_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
ACTIVE, TERMINAL = ("queued", "running", "stopping"), ("done", "stopped", "failed")
EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130
CURVE_POINTS = 2000  # most curve rows sent for a finished job read back from metrics.jsonl


def new_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


@dataclasses.dataclass
class Job:
    """One job. ``argv``: the command's flags (``--out`` its own folder); ``name``: the client's
    file name, shown only; ``progress``: iteration, total, batch, loss, PSNRs, ETA (seconds);
    ``curve``: [iter, loss, psnr_fit, psnr_gt | None] rows of the current batch's first fit;
    ``version`` grows with every change (the event stream sends on change)."""

    id: str
    folder: pathlib.Path
    argv: list
    task: str
    name: str
    created: float
    status: str = "queued"
    message: str = ""
    notes: list = dataclasses.field(default_factory=list)
    phase: str = ""
    progress: dict = dataclasses.field(default_factory=dict)
    curve: list = dataclasses.field(default_factory=list)
    version: int = 0
    stop_requested: bool = False
    _t0: Optional[tuple] = None

    def bump(self) -> None:
        self.version += 1

    def record(self) -> dict:
        keys = ("id", "argv", "task", "name", "created", "status", "message", "notes")
        return {k: getattr(self, k) for k in keys}

    def save(self) -> None:
        atomic_write_bytes(
            self.folder / "job.json", (json.dumps(self.record(), indent=1) + "\n").encode()
        )

    @property
    def resumable(self) -> bool:
        from dipjax.checkpoint import resumable  # the command line's own rule for --resume

        return resumable(self.folder / "checkpoint")

    def on_chunk(self, p) -> bool:
        """The engine's progress callback (``dipjax.engine.Progress``); True asks it to stop."""
        now, done = time.monotonic(), (p.batch - 1) * p.total + p.done
        total = p.batches * p.total
        if self._t0 is None:
            self._t0 = (now, done)
        t0, d0 = self._t0
        rate = (done - d0) / (now - t0) if now > t0 and done > d0 else None
        last = p.last
        if self.progress.get("batch") != p.batch:
            self.curve = []
        self.curve += [
            [r["iter"], r["loss"], r["psnr_fit"], r.get("psnr_gt")] for r in p.rows[p.fits[0]]
        ]
        self.phase = "running"
        self.progress = {
            "iter": p.done,
            "iters": p.total,
            "batch": p.batch,
            "batches": p.batches,
            "loss": last["loss"],
            "psnr_fit": last["psnr_fit"],
            "eta_s": (total - done) / rate if rate else None,
            **({"psnr_gt": last["psnr_gt"]} if "psnr_gt" in last else {}),  # with a clean image
        }
        self.bump()
        return self.stop_requested

    def curve_rows(self) -> list:
        """The curve: live rows, or, for a job of an earlier server, its metrics.jsonl."""
        if self.curve or self.status in ACTIVE:
            return self.curve
        paths = [self.folder / "metrics.jsonl", *sorted(self.folder.glob("seed_*/metrics.jsonl"))]
        path = next((p for p in paths if p.is_file()), None)
        if path is None:
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        step = max(1, len(rows) // CURVE_POINTS)
        return [[r["iter"], r["loss"], r["psnr_fit"], r.get("psnr_gt")] for r in rows[::step]]


def preview_checkpointer(path: pathlib.Path):
    """A Checkpointer class that also writes the first fit's moving-average output to ``path``
    at each save (the state is on the host then anyway)."""
    from dipjax.checkpoint import Checkpointer

    class PreviewCheckpointer(Checkpointer):
        def save(self, fits, stacked, state, histories) -> None:
            super().save(fits, stacked, state, histories)
            avg = np.asarray(state.out_avg)
            save_png(path, np.clip(avg.reshape(-1, *avg.shape[-3:])[0], 0, 1))

    return PreviewCheckpointer


class _Log(io.TextIOBase):
    """The command's stderr while a job runs: appended to log.txt, its lines kept as notes."""

    def __init__(self, job: Job):
        self.job, self.file = job, open(job.folder / "log.txt", "a")

    def write(self, s: str) -> int:
        self.file.write(s)
        self.file.flush()
        for line in s.splitlines():
            if not line.startswith("dipjax: "):
                continue
            note = line[len("dipjax: ") :].replace(str(self.job.folder), ".")
            if note.startswith("interrupted;"):  # the command's resume advice: the page resumes
                continue
            if note.startswith("wrote ./"):  # the result line: the page shows the files
                note = note[len("wrote ./") :].strip()
            if note:
                self.job.notes.append(note)
                self.job.bump()
        return len(s)


class Jobs:
    """The jobs under ``runs`` and the queue that runs them, one at a time (the process owns
    its devices; two fits at once would only share them)."""

    def __init__(self, runs: pathlib.Path):
        self.runs = pathlib.Path(runs)
        self.runs.mkdir(parents=True, exist_ok=True)
        self.jobs: dict = {}
        self.queue: collections.deque = collections.deque()
        self.version = 0  # grows when the queue moves
        self._cv = threading.Condition()
        self._closing = False
        self._thread = None
        for folder in sorted(self.runs.iterdir()):
            job = _load(folder)
            if job is not None:
                self.jobs[job.id] = job

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="dipjax-jobs", daemon=True)
        self._thread.start()

    @property
    def closing(self) -> bool:
        return self._closing

    def begin_close(self) -> None:
        """Ask the running job to stop (it saves a checkpoint); take no new one."""
        with self._cv:
            self._closing = True
            for job in self.jobs.values():
                if job.status == "running":
                    job.stop_requested = True
            self._cv.notify_all()

    def close(self, timeout: float = 120.0) -> None:
        """Stop the running job (it saves a checkpoint) and end the worker."""
        self.begin_close()
        if self._thread is not None:
            self._thread.join(timeout)

    def get(self, job_id: str) -> Optional[Job]:
        return self.jobs.get(job_id) if JOB_ID.match(job_id or "") else None

    def position(self, job: Job) -> Optional[int]:
        """1 = next to run; None when not waiting."""
        return list(self.queue).index(job) + 1 if job in self.queue else None

    def submit(self, job: Job) -> None:
        with self._cv:
            self.jobs[job.id] = job
            job.status, job.message, job.phase, job.stop_requested = "queued", "", "", False
            job.save()
            self.queue.append(job)
            self.version += 1
            job.bump()
            self._cv.notify_all()

    def stop(self, job: Job) -> None:
        with self._cv:
            if job in self.queue:
                self.queue.remove(job)
                self.version += 1
                self._finish(job, "stopped", "stopped before it started")
            elif job.status == "running":
                job.stop_requested, job.status = True, "stopping"
                job.bump()

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self.queue and not self._closing:
                    self._cv.wait()
                if self._closing:
                    return
                job = self.queue.popleft()
                self.version += 1
                job.status, job.phase, job._t0 = "running", "compiling", None
                job.notes = []  # the run says its notes again
                job.save()
                job.bump()
            self._run(job)

    def _run(self, job: Job) -> None:
        from dipjax import fit

        argv = ["--resume", str(job.folder), "--quiet"] if job.resumable else job.argv
        log = _Log(job)
        try:
            with contextlib.redirect_stderr(log):
                rc = fit.main(
                    argv,
                    on_chunk=job.on_chunk,
                    checkpointer=preview_checkpointer(job.folder / "preview.png"),
                )
        except SystemExit as e:  # a flag argparse refused: its message is in the log
            rc = e.code if isinstance(e.code, int) else EXIT_USAGE
        finally:
            log.file.close()
        errors = [n[len("error: ") :] for n in job.notes if n.startswith("error: ")]
        with self._cv:
            if rc == EXIT_OK:
                self._finish(job, "done", "")
            elif rc == EXIT_INTERRUPTED:
                self._finish(job, "stopped", "stopped; a checkpoint is kept: resume continues it")
            else:
                self._finish(job, "failed", errors[-1] if errors else f"exit status {rc}")

    def _finish(self, job: Job, status: str, message: str) -> None:
        job.status, job.message, job.phase = status, message, ""
        job.save()
        job.bump()


def _load(folder: pathlib.Path) -> Optional[Job]:
    """A job folder of an earlier server; a job that was queued or running then is stopped
    now (resumable from its checkpoint, or from the start)."""
    if not (JOB_ID.match(folder.name) and (folder / "job.json").is_file()):
        return None
    try:
        rec = json.loads((folder / "job.json").read_text())
    except (OSError, ValueError):
        return None
    job = Job(folder.name, folder, rec["argv"], rec["task"], rec["name"], rec["created"])
    job.status, job.message, job.notes = rec["status"], rec["message"], rec["notes"]
    if job.status in ACTIVE:
        job.status, job.message = (
            "stopped",
            "the server stopped while this job was waiting or running",
        )
    return job
