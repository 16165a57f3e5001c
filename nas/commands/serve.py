"""`nas serve`: the HTTP API over the same core as the CLI, with its search job runner."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import typer

from nas import core
from nas.commands import user_errors
from nas.errors import ServeError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(token_file: Path | None) -> str | None:
    """The bearer token: from --token-file, else $NAS_API_TOKEN, else none."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as err:
            raise ServeError(f"cannot read --token-file {token_file}: {err.strerror}") from None
        if not token:
            raise ServeError(f"--token-file {token_file} is empty")
        return token
    return os.environ.get("NAS_API_TOKEN") or None


def serve(
    db: str | None = typer.Option(
        None, "--db", help="Database URL (default as for every command)."
    ),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Run searches on Ray."),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="File holding the bearer token (else $NAS_API_TOKEN)."
    ),
    private_reads: bool = typer.Option(False, "--private-reads", help="Reads need the token too."),
    data_dir: Path = typer.Option(Path("runs/service"), "--data-dir", help="Logs and exports."),
) -> None:
    """Serve the HTTP API (OpenAPI at /docs); searches run in supervised worker processes."""
    import uvicorn

    from nas.service.app import create_app

    with user_errors():
        token = read_token(token_file)
        if token is None and not _is_loopback(host):
            raise ServeError(
                f"refusing to serve on {host} without a token: set $NAS_API_TOKEN or pass "
                "--token-file (without one, only a loopback address such as 127.0.0.1)"
            )
        store = core.open_store(db)
        app = create_app(store, data_dir, token, private_reads, ray_address)
    typer.echo(f"nas service on http://{host}:{port} (API docs at /docs), database {store.url}")
    uvicorn.run(app, host=host, port=port, log_level="warning")
