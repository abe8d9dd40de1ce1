"""The page's HTTP side (Starlette): the static page, its JSON API and the jobs' event streams.

Routes: ``GET /`` the page; ``GET /api/options`` tasks, presets, limits; ``GET /api/demo.png``
the packaged image; ``POST /api/inspect`` (an image: its size, or the command line's message);
``GET|POST /api/jobs``; ``GET /api/jobs/{id}``, ``.../events`` (server-sent events until the job
ends), ``POST .../stop``, ``POST .../resume``, ``GET .../files/{name}`` (a run file). Bad input
is answered 4xx with ``{"error": one line}`` and nothing is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import re
import shutil
import tempfile
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dipjax import cli_args, runfolder
from dipjax.app import form
from dipjax.app.jobs import TERMINAL, Job, Jobs, new_id
from dipjax.io import PACKAGED_IMAGE, InputError, finite_json, load_image

STATIC = pathlib.Path(__file__).parent / "static"
DEFAULT_UPLOAD_BYTES = 25 * 2**20
# The run files a client may fetch, relative to the job folder.
FILES = re.compile(
    r"^((seed_\d+/)?(output|output_avg|output_es|curves)\.png|(seed_\d+/)?metrics\.jsonl"
    r"|(seed_\d+/)?posterior_(mean|std)\.png"
    r"|(degraded|comparison|mean|std|preview)\.png|summary\.json|metrics\.(csv|json)|log\.txt"
    r"|inputs/(image(\.[a-z]+)?|mask\.png))$"
)


def _error(message: str, status: int = 400) -> JSONResponse:
    # The command line's advice in the server's terms
    message = message.replace("with DIPJAX_MAX_PIXELS", "with the server's --max-megapixels")
    return JSONResponse({"error": message}, status_code=status)


async def _read_form(request: Request, limit: int):
    """The multipart form, refused (``InputError``) past ``limit`` bytes before it is parsed."""
    declared = request.headers.get("content-length") or "0"
    if not declared.isdigit():
        raise InputError("upload: the request's Content-Length is not a number")
    if int(declared) > limit:
        raise _TooBig(_too_big(limit))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooBig(_too_big(limit))

    async def replay():
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    try:
        return await Request(request.scope, replay).form(max_files=2, max_fields=30)
    except (HTTPException, MultiPartException) as e:  # too many files or fields, bad encoding
        raise InputError(f"upload: {getattr(e, 'detail', None) or e}") from None


class _TooBig(InputError):
    """An upload over the limit (413; other upload errors are 400)."""


@contextlib.asynccontextmanager
async def _closing(upload_form):
    """The uploads' temporary files closed when the request is answered."""
    try:
        yield upload_form
    finally:
        await upload_form.close()


def _too_big(limit: int) -> str:
    return f"upload: over the limit of {limit / 2**20:g} MB (the server's --max-upload-mb)"


def _client_name(upload) -> str:
    """The client's file name, for messages only: its last part, printable, at most 80 chars."""
    name = pathlib.PurePosixPath(str(upload.filename or "").replace("\\", "/")).name
    return "".join(c for c in name if c.isprintable())[:80] or "upload"


def _suffix(name: str) -> str:
    suffix = pathlib.PurePosixPath(name).suffix.lower()
    return suffix if suffix in runfolder.IMAGE_SUFFIXES + (".heic", ".heif") else ""


def _drop_opaque_alpha(path: pathlib.Path) -> None:
    """A canvas exports RGBA: a mask whose alpha is opaque everywhere is rewritten without it,
    so that the command line does not warn of a dropped alpha channel that held nothing."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.mode not in ("RGBA", "LA") or img.getchannel("A").getextrema()[0] < 255:
                return
            img.convert(img.mode[:-1]).save(path, format="PNG")
    except (OSError, ValueError, Image.DecompressionBombError):
        return  # not an image: the command line's own check says so


def _files(folder: pathlib.Path) -> list:
    """The job's files a client may fetch (not walking checkpoint/, which orbax rewrites)."""
    found = []
    try:
        for entry in sorted(folder.iterdir()):
            inside = entry.is_dir() and (entry.name == "inputs" or entry.name.startswith("seed_"))
            for p in sorted(entry.iterdir()) if inside else [entry]:
                name = str(p.relative_to(folder))
                if FILES.match(name) and p.is_file():
                    found.append(name)
    except OSError:  # a file replaced while listed; the next event lists it again
        pass
    return found


def _public(job: Job) -> dict:
    """What a client sees of a job's record: not its argv (the server's paths; job.json keeps
    it)."""
    return {k: v for k, v in job.record().items() if k != "argv"}


def _state(jobs: Jobs, job: Job, curve_from: int = 0) -> dict:
    return finite_json(
        {
            **_public(job),
            "phase": job.phase,
            "progress": job.progress,
            "position": jobs.position(job),
            "resumable": job.status == "stopped",
            "files": _files(job.folder),
            "curve_from": curve_from,
            "curve": job.curve_rows()[curve_from:],
        }
    )


def create_app(runs, *, max_upload_bytes: int = DEFAULT_UPLOAD_BYTES, start_worker: bool = True):
    """The page's application over the job folders in ``runs`` (created)."""
    jobs = Jobs(pathlib.Path(runs))
    info = {}

    def accelerator() -> bool:
        if "accelerator" not in info:
            import jax

            info["device"] = str(jax.devices()[0].device_kind)
            info["accelerator"] = jax.default_backend() != "cpu"
        return info["accelerator"]

    async def index(request):
        return FileResponse(STATIC / "index.html")

    async def options(request):
        from dipjax.presets import PRESETS

        acc = await run_in_threadpool(accelerator)
        return JSONResponse(
            {
                "tasks": form.TASKS,
                "presets": {t: [n for n, p in PRESETS.items() if p.task == t] for t in form.TASKS},
                "defaults": form.default_presets(acc),
                "iters": {n: p.iters for n, p in PRESETS.items()},
                "noises": cli_args.NOISES,
                "mask_sources": form.MASK_SOURCES,
                "device": info["device"],
                "max_upload_bytes": max_upload_bytes,
            }
        )

    async def demo(request):
        data = PACKAGED_IMAGE.read_bytes()
        return Response(data, media_type="image/png")

    def save_uploads(tmp: pathlib.Path, upload_form) -> tuple:
        """The uploads as files under fixed names in ``tmp`` and {path: client name}."""
        paths, names = {}, {}
        for role in ("image", "mask"):
            up = upload_form.get(role)
            if up is None or isinstance(up, str):
                continue
            name = _client_name(up)
            path = tmp / (form.IMAGE_NAME + _suffix(name) if role == "image" else form.MASK_NAME)
            path.write_bytes(up.file.read())
            if role == "mask":
                _drop_opaque_alpha(path)
            paths[role], names[str(path)] = path, name
        return paths, names

    def named(message: str, names: dict) -> str:
        for path, name in names.items():
            message = message.replace(path, name)
        return message

    async def inspect(request):
        try:
            upload_form = await _read_form(request, max_upload_bytes)
        except InputError as e:
            return _error(str(e), 413 if isinstance(e, _TooBig) else 400)
        async with _closing(upload_form):
            return await _inspect(upload_form)

    async def _inspect(upload_form):
        with tempfile.TemporaryDirectory(prefix="dipjax-app-") as tmp:
            paths, names = save_uploads(pathlib.Path(tmp), upload_form)
            if "image" not in paths:
                return _error("image: no file given")
            try:
                img = await run_in_threadpool(load_image, paths["image"])
            except InputError as e:
                return _error(named(str(e), names))
        return JSONResponse({"width": img.shape[1], "height": img.shape[0]})

    async def submit(request):
        try:
            upload_form = await _read_form(request, max_upload_bytes)
        except InputError as e:
            return _error(str(e), 413 if isinstance(e, _TooBig) else 400)
        async with _closing(upload_form):
            return await _submit(upload_form)

    async def _submit(upload_form):
        fields = {k: v for k, v in upload_form.items() if isinstance(v, str)}
        with tempfile.TemporaryDirectory(prefix="dipjax-app-") as tmp:
            paths, names = save_uploads(pathlib.Path(tmp), upload_form)
            try:
                argv = form.argv_for(fields, paths.get("image"), paths.get("mask"))
                notes = await run_in_threadpool(form.check, argv, accelerator())
            except InputError as e:
                return _error(named(str(e), names))
            job_id = new_id()
            folder = jobs.runs / job_id
            (folder / "inputs").mkdir(parents=True)
            for path in paths.values():
                shutil.move(str(path), folder / "inputs" / path.name)
        inputs = {r: folder / "inputs" / p.name for r, p in paths.items()}
        argv = form.argv_for(fields, inputs.get("image"), inputs.get("mask"))
        argv += ["--quiet", "--overwrite", f"--out={folder}"]
        argv += [f"--checkpoint-every={25 if not accelerator() else 200}"]
        image_name = names.get(str(paths.get("image")), "packaged image")
        job = Job(job_id, folder, argv, fields.get("task", ""), image_name, time.time())
        job.notes = [named(n, names) for n in notes]
        jobs.submit(job)
        return JSONResponse(_state(jobs, job), status_code=201)

    def job_or_404(request):
        return jobs.get(request.path_params["job_id"])

    async def list_jobs(request):
        items = sorted(list(jobs.jobs.values()), key=lambda j: j.created, reverse=True)
        return JSONResponse([{**_public(j), "position": jobs.position(j)} for j in items])

    async def show(request):
        job = job_or_404(request)
        return JSONResponse(_state(jobs, job)) if job else _error("no such job", 404)

    async def stop(request):
        job = job_or_404(request)
        if job is None:
            return _error("no such job", 404)
        jobs.stop(job)
        return JSONResponse(_state(jobs, job))

    async def resume(request):
        job = job_or_404(request)
        if job is None:
            return _error("no such job", 404)
        if job.status != "stopped":
            return _error(f"job {job.id} is {job.status}; only a stopped job resumes", 409)
        jobs.submit(job)
        return JSONResponse(_state(jobs, job))

    async def file(request):
        job, name = job_or_404(request), request.path_params["name"]
        path = job.folder / name if job and FILES.match(name) else None
        if path is None or not path.is_file():
            return _error("no such file", 404)
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    async def events(request):
        job = job_or_404(request)
        if job is None:
            return _error("no such job", 404)

        async def stream():
            seen, sent, batch = None, 0, None
            while not (jobs.closing or await request.is_disconnected()):
                now = (job.version, jobs.version)
                if now != seen:
                    if job.progress.get("batch") != batch:  # a new batch starts a new curve
                        sent, batch = 0, job.progress.get("batch")
                    seen, state = now, _state(jobs, job, sent)
                    sent += len(state["curve"])
                    yield f"data: {json.dumps(state)}\n\n"
                    if job.status in TERMINAL:
                        yield "event: end\ndata: {}\n\n"
                        return
                await asyncio.sleep(0.25)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if start_worker:
            jobs.start()
        yield
        await run_in_threadpool(jobs.close)

    job = "/api/jobs/{job_id}"
    routes = [
        Route("/", index),
        Route("/api/options", options),
        Route("/api/demo.png", demo),
        Route("/api/inspect", inspect, methods=["POST"]),
        Route("/api/jobs", list_jobs),
        Route("/api/jobs", submit, methods=["POST"]),
        Route(job, show),
        Route(job + "/events", events),
        Route(job + "/stop", stop, methods=["POST"]),
        Route(job + "/resume", resume, methods=["POST"]),
        Route(job + "/files/{name:path}", file),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.jobs = jobs
    return app
