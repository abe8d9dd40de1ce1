"""``python -m dipjax.app`` (or ``dipjax-app``): a local web page to restore a photo.

Needs the ``app`` extra (``pip install -e '.[app]'``): Starlette and uvicorn.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import socket
import sys

LOCAL = ("127.0.0.1", "localhost", "::1")


def default_runs() -> pathlib.Path:
    """Where jobs are kept: $XDG_DATA_HOME/dipjax/runs, else ~/.local/share/dipjax/runs."""
    base = os.environ.get("XDG_DATA_HOME") or pathlib.Path.home() / ".local" / "share"
    return pathlib.Path(base) / "dipjax" / "runs"


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m dipjax.app",
        description="Serve a local web page that restores a photo with Deep Image Prior.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=_port, default=8765, help="port (0: any free one)")
    ap.add_argument("--runs", type=pathlib.Path, default=default_runs(), help="job folders")
    ap.add_argument("--max-upload-mb", type=_positive, default=25.0, help="largest upload")
    ap.add_argument(
        "--max-megapixels",
        type=_positive,
        default=40.0,
        help="largest image (sets DIPJAX_MAX_PIXELS for this server's jobs)",
    )
    return ap


def main(argv=None) -> int:
    from dipjax import host_memory

    host_memory.keep_freed_memory()  # before uvicorn's and XLA's threads allocate (see its note)
    args = parser().parse_args(argv)
    try:
        import uvicorn

        from dipjax.app.server import create_app
    except ImportError as e:
        print(
            f"dipjax-app: error: {e.name} is missing; install the page's extra: "
            f"pip install 'dipjax[app]' (or pip install -e '.[app]' in a checkout)",
            file=sys.stderr,
        )
        return 2
    os.environ["DIPJAX_MAX_PIXELS"] = str(int(args.max_megapixels * 1e6))
    if args.host not in LOCAL:
        print(
            f"dipjax-app: warning: listening on {args.host}: the page has no login; anyone "
            f"who reaches this address can run jobs and read their files",
            file=sys.stderr,
        )
    from dipjax import compile_cache

    if compile_cache.default_dir() is not None:
        compile_cache.enable(compile_cache.default_dir())
    app = create_app(args.runs, max_upload_bytes=int(args.max_upload_mb * 2**20))
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
        sock.listen(128)  # connections wait in the backlog until the server accepts them
    except OSError as e:
        print(f"dipjax-app: error: {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"dipjax-app: serving on http://{shown}:{port}/ (jobs in {args.runs})", flush=True)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # Before uvicorn waits for open connections: end the pages' event streams and stop
            # the running job (checkpoint kept), so that Ctrl-C does not wait for a whole fit.
            app.state.jobs.begin_close()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
