"""One way to run the export's helper scripts in a Python of their own: `python SCRIPT
REQUEST REPLY`, a JSON request in, a JSON reply out, in files (the converters and TFLM print
on stdout and stderr). `nas.export.tflite` runs the LiteRT converter's script in its own
environment this way, and `nas.export.tflm` the TFLite Micro one in this Python."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.errors import ExportError


def run_script(
    python: str | Path,
    script: Path,
    folder: Path,
    request: dict[str, Any],
    timeout_s: float,
    timed_out: str,
    failed: Callable[[str], str],
) -> dict[str, Any]:
    """The reply of `script` run by `python` on `request` (both files in `folder`).
    ExportError(`timed_out`) past `timeout_s`, and ExportError(`failed(stderr)`) when the
    script exits with an error or writes no reply."""
    request_path, reply_path = folder / "request.json", folder / "reply.json"
    request_path.write_text(json.dumps(request))
    command = [str(python), str(script), str(request_path), str(reply_path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ExportError(timed_out) from None
    if done.returncode != 0 or not reply_path.is_file():
        raise ExportError(failed(done.stderr.strip()))
    return json.loads(reply_path.read_text())
