"""The command line's run folder: creating it, the run record (``run.json``) that ``--resume``
reads back, and the list of input images a run was given.

``run.json`` holds the run's flags with absolute paths and a run id; the checkpoint carries the
same id, so a folder can only resume the run that wrote it.
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
import shutil
import uuid

from dipjax.io import InputError, atomic_write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
RUN_FLAGS = (
    "task",
    "preset",
    "image",
    "mask",
    "mask_kind",
    "keep",
    "flash",
    "blur",
    "kernel",
    "gt",
    "degrade",
    "noise",
    "sigma",
    "density",
    "quality",
    "scale",
    "iters",
    "lr",
    "reg_noise_std",
    "tv_weight",
    "early_stop",
    "es_window",
    "es_patience",
    "sgld",
    "sgld_burn_in",
    "weight_decay",
    "precision",
    "init_style",
    "seed",
    "seeds",
    "strategy",
    "max_batch",
    "save_every",
    "checkpoint_every",
    "chunk",
)
PATH_FLAGS = ("mask", "flash", "kernel", "gt")
# What a dipjax run writes into its folder; --overwrite clears these and nothing else.
RUN_FILES = (
    "run.json",
    "summary.json",
    "metrics.jsonl",
    "metrics.csv",
    "metrics.json",
    "output.png",
    "output_avg.png",
    "output_es.png",
    "degraded.png",
    "comparison.png",
    "curves.png",
    "mean.png",
    "std.png",
    "std.npy",
    "posterior_mean.png",
    "posterior_std.png",
    "posterior_mean.npy",
    "posterior_std.npy",
)
RUN_DIRS = ("checkpoint", "snapshots")
LOCK = ".dipjax.lock"
_held = {}  # folder -> open lock file: the lock lasts as long as the process


def lock(out: pathlib.Path, flag: str = "--out") -> None:
    """Refuse a second process running in the same folder at the same time. The lock file is
    removed when the run lets go of it (``release``); a lock taken on a file removed meanwhile
    is taken again on the new one."""
    import fcntl

    key = str(pathlib.Path(out).resolve())
    if key in _held:
        return
    path = pathlib.Path(out) / LOCK
    while True:
        f = open(path, "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise InputError(f"{flag} {out}: another dipjax run is writing there now") from None
        if _same_file(path, f):
            break
        f.close()
    _held[key] = f


def _same_file(path: pathlib.Path, f) -> bool:
    """Whether ``path`` still names the file open as ``f``."""
    try:
        a, b = os.stat(path), os.fstat(f.fileno())
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def expand_images(args_image) -> tuple[list, bool]:
    """The image paths named by --image (files, folders, globs), in order, and whether more
    than one image was asked for (a list, a folder or a glob)."""
    if not args_image:
        return [None], False
    items = [args_image] if isinstance(args_image, str) else list(args_image)
    paths, many = [], len(items) > 1
    for item in items:
        p = pathlib.Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(
                    f"--image {item}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})"
                )
            paths += found
            many = True
        elif any(c in item for c in "*?[") and not p.exists():
            found = sorted(glob.glob(item))
            if not found:
                raise InputError(f"--image {item}: the pattern matches no file")
            paths += found
            many = True
        else:
            paths.append(item)
    return paths, many


def unique_names(paths) -> list:
    """A folder name per path: the file's stem, with _2, _3 ... where stems repeat."""
    seen, names = {}, []
    for p in paths:
        stem = pathlib.Path(p).stem if p else "astronaut"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def prepare_out(path: str, overwrite: bool, shared: bool = False) -> pathlib.Path:
    """The output folder, created and probed for writing. With ``overwrite`` what an earlier run
    left there is removed first (its checkpoint too). ``shared``: other processes of a
    distributed run write there too, so an existing folder is not refused."""
    out = pathlib.Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    # A folder holding only the record of a run that never got to write anything (it failed
    # or was killed first) is taken as empty: such a folder could neither rerun nor resume.
    leftovers = (
        [p for p in out.iterdir() if p.name not in ("run.json", LOCK)] if out.is_dir() else []
    )
    if out.is_dir() and not shared:
        lock(out)
    if leftovers and not shared:
        if not overwrite:
            raise InputError(
                f"--out {out}: folder exists and is not empty (add --overwrite, or "
                f"--resume {out} to continue an interrupted run)"
            )
        clear_run(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".dipjax-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        if not shared:
            lock(out)
    except OSError as e:
        raise InputError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return out


def clear_run(out: pathlib.Path) -> None:
    """Remove an earlier run's files and folders (image and seed folders hold a
    metrics.jsonl or output.png); leave anything else."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for child in out.iterdir():
        is_run_dir = child.is_dir() and (
            child.name in RUN_DIRS
            or child.name.startswith(("seed_", "checkpoint.process"))
            or (child / "metrics.jsonl").exists()
            or (child / "output.png").exists()
            or (child / "summary.json").exists()
        )
        if is_run_dir:
            shutil.rmtree(child)
    for part in [*out.glob("metrics.process*.json"), *out.glob("summary.process*.json")]:
        part.unlink()


def write_record(out: pathlib.Path, args, preset: str) -> str:
    """Write run.json (the flags, paths made absolute, a new run id, and ``preset``: the name
    of the preset the run resolved, so that a resume on another machine does not pick its own
    default); returns the id."""
    record = {**{k: getattr(args, k) for k in RUN_FLAGS}, "preset": preset}
    for k in (*PATH_FLAGS, "image"):
        record[k] = _as_recorded(k, record[k])
    record["run_id"] = uuid.uuid4().hex
    atomic_write_bytes(out / "run.json", (json.dumps(record, indent=1) + "\n").encode())
    return record["run_id"]


def release() -> None:
    """Let go of the folders this process locked."""
    while _held:
        folder, f = _held.popitem()
        path = pathlib.Path(folder) / LOCK
        if _same_file(path, f):  # not another run's lock in a folder made anew
            try:
                path.unlink()  # while still held: see lock()
            except OSError:
                pass
        f.close()


def refuse_changes(args, defaults: dict) -> None:
    """--resume continues a run as it was started, in its own folder: refuse run flags given
    with it that differ from the run's own (run.json), and --out or --overwrite. ``defaults``:
    the parser's, of ``RUN_FLAGS`` and ``out``."""
    record = read_record(args.resume)
    given = [
        k
        for k in RUN_FLAGS
        if getattr(args, k, None) != defaults.get(k)
        and _as_recorded(k, getattr(args, k)) != record.get(k)
    ]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise InputError(
            f"--resume continues the run with its own settings (run.json); "
            f"{flags} cannot change them: drop {flags}, or start a new run"
        )
    out = getattr(args, "out", None)
    if getattr(args, "overwrite", False) or (
        out != defaults.get("out") and not _same_folder(out, args.resume)
    ):
        flag = "--overwrite" if args.overwrite else f"--out {out}"
        raise InputError(f"--resume {args.resume} writes into that folder: drop {flag}")


def _as_recorded(flag: str, value):
    """``value`` of ``flag`` as run.json records it (paths absolute)."""
    if flag in PATH_FLAGS and value:
        return str(pathlib.Path(value).resolve())
    if flag == "image" and value:
        return [
            str(pathlib.Path(v).resolve()) if not any(c in v for c in "*?[") else v for v in value
        ]
    return value


def _same_folder(a, b) -> bool:
    return pathlib.Path(a).resolve() == pathlib.Path(b).resolve()


def read_record(folder: str) -> dict:
    """The run record of ``folder`` (for --resume)."""
    run_file = pathlib.Path(folder) / "run.json"
    if not run_file.is_file():
        raise InputError(f"--resume {folder}: no run.json there (not a dipjax output folder)")
    try:
        record = json.loads(run_file.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"--resume {folder}: run.json is unreadable ({e})") from None
    for k in PATH_FLAGS:
        if record.get(k) and not pathlib.Path(record[k]).exists():
            raise InputError(f"--resume {folder}: the run's --{k} {record[k]} no longer exists")
    return record
