"""Fixtures of the service's tests: a server in uvicorn and a browser page for the browser
tests (helpers in web.py), and an in-process API client."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient

from nas.service.app import create_app
from nas.store import Store
from tests.nas.service.web import CHROMIUM, CHROMIUM_ARGS, sync_playwright


@contextlib.contextmanager
def serving(app):
    """`app` in uvicorn on a free port (a thread); yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=15)
    app.state.jobs.stop(terminate_workers=True)  # any worker still running is ours
    sock.close()


@pytest.fixture
def api_client(tmp_path):
    """`api_client(token)` -> (a TestClient of a server with that token on an empty SQLite
    database in tmp_path, its app). After the test, every worker the server started is
    stopped and the database closed."""
    with contextlib.ExitStack() as stack:

        def open_client(token: str):
            store = Store(f"sqlite:///{tmp_path / 'nas.db'}")
            stack.callback(store.dispose)
            app = create_app(store, tmp_path / "service", token, supervise=False)
            stack.callback(app.state.jobs.stop, terminate_workers=True)
            return stack.enter_context(TestClient(app)), app

        yield open_client


@pytest.fixture
def server(tmp_path):
    """`nas serve`'s app on a fresh SQLite file, in uvicorn on a free port (a thread)."""
    app = create_app(Store(f"sqlite:///{tmp_path / 'web.db'}"), tmp_path / "data", supervise=True)
    with serving(app) as url:
        yield url


PRIVATE_TOKEN = "web-private-token"


@pytest.fixture
def private_server(tmp_path):
    """The same app as `server` (the same SQLite file), started as `nas serve
    --private-reads` with the token PRIVATE_TOKEN: every route, reads too, needs it."""
    store = Store(f"sqlite:///{tmp_path / 'web.db'}")
    app = create_app(store, tmp_path / "data", PRIVATE_TOKEN, private_reads=True, supervise=True)
    with serving(app) as url:
        yield url


@pytest.fixture
def page():
    """A chromium page; JavaScript errors in it fail the test."""
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            accept_downloads=True, viewport={"width": 1360, "height": 900}
        )
        context.set_default_timeout(15_000)
        tab = context.new_page()
        tab.on("pageerror", lambda err: errors.append(str(err)))
        yield tab
        browser.close()
    assert not errors, f"JavaScript errors in the page: {errors}"
