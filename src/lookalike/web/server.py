"""Run the web UI on uvicorn: bind first (so ``--port 0`` knows its port), print the URL.

The socket is bound before uvicorn starts, so the printed URL always names the real port
and is printed only once the port is taken; uvicorn then serves on that socket and stops
gracefully on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .security import LOCAL_HOSTS, Guard, host_name

_WILDCARDS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True)
class ServeOptions:
    """How ``lookalike serve`` runs.

    Attributes:
        host: the address to bind (loopback unless the user said otherwise).
        port: the port; 0 picks a free one.
        allowed_hosts: extra host names clients may use (``Host`` header), for remote use.
        allow_moves: the duplicate review may move files into the trash folder.
        max_upload_bytes: the upload limit.
        open_browser: open the URL in the default browser once serving.
        warm: load the model in the background so the first upload is fast.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    allow_moves: bool = False
    max_upload_bytes: int = 20 * 1024 * 1024
    open_browser: bool = False
    warm: bool = True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (IPv6 when the host is one).

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are
    # TCP; without it Nagle + delayed ACKs add 40 ms to every keep-alive response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Listening now, so a client that reads the printed URL can connect at once (its
        # connection waits in the backlog while uvicorn starts).
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


def allowed_names(options: ServeOptions) -> frozenset[str]:
    """The names a request's ``Host`` may carry, without ports: ``--allowed-host`` takes
    ``photos.lan``, ``photos.lan:8000`` or ``[fd00::1]:8000`` alike (the ``Host`` header's
    port is stripped before the comparison, so a name kept with its port never matched)."""
    names = set(LOCAL_HOSTS) | {host_name(h) for h in options.allowed_hosts if h.strip()}
    if options.host in _WILDCARDS:
        # Reachable under the machine's own names too.
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    else:
        names.add(options.host.lower())
    return frozenset(names)


def url_for(host: str, port: int, token: str | None) -> str:
    shown = "127.0.0.1" if host in _WILDCARDS else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def _tiny_png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 32), (128, 128, 128)).save(out, "PNG")
    return out.getvalue()


def serve(index: Any, options: ServeOptions, echo: Callable[[str], None]) -> None:
    """Serve ``index`` until interrupted. ``echo`` prints the URL (the first line).

    Raises:
        OSError: the address cannot be bound.
    """
    import uvicorn

    from .app import create_app

    sock = bind(options.host, options.port)
    port = sock.getsockname()[1]
    guard = Guard(allowed_hosts=allowed_names(options), max_body_bytes=options.max_upload_bytes)
    app = create_app(index, guard=guard, allow_moves=options.allow_moves)
    url = url_for(options.host, port, guard.token)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
        server_header=False,
    )
    server = uvicorn.Server(config)
    echo(url)
    if options.warm and index.info().get("model"):
        inner: Any = app.app  # the Starlette app inside the guards
        threading.Thread(target=_warm, args=(inner.state.library,), daemon=True).start()
    if options.open_browser:
        import webbrowser

        threading.Timer(0.3, webbrowser.open, args=(url,)).start()
    with contextlib.closing(sock), _stop_on_signals(server):
        server.run(sockets=[sock])


@contextlib.contextmanager
def _stop_on_signals(server: Any) -> Iterator[None]:
    """Ctrl-C or SIGTERM at any moment means a graceful stop, never a traceback.

    uvicorn handles both signals while it serves, then re-raises the one it caught; a
    signal that comes before it starts (the URL is already printed) would otherwise be a
    KeyboardInterrupt wherever the main thread happens to be.
    """

    def stop(signum: int, frame: Any) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _warm(library: Any) -> None:
    """Load the model now, so the first uploaded query does not wait for it."""
    with contextlib.suppress(Exception):  # a failure shows when the user uploads
        library.embed(_tiny_png())
