"""`bash scripts/lab.sh` as a user starts it: real JupyterLab, on copies of the notebooks, opening the quickstart."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from support import REPO, added_files


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_lab_session_opens_the_quickstart_and_saves_only_into_its_copies(tmp_path):
    """What the lab's autosave does (the contents API, through jupytext's paired .py) reaches the copies outside
    the clone; the tracked notebook and the clone's files stay as they were, so the tests pass after (and during)
    a lab session."""
    tracked = REPO / "notebooks" / "00_quickstart.ipynb"
    before_bytes, before_files = tracked.read_bytes(), added_files()
    lab, port, token = tmp_path / "lab", _free_port(), secrets.token_hex(16)
    env = {**os.environ, "WORKBENCH_LAB": str(lab), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    server = subprocess.Popen(
        ["bash", str(REPO / "scripts" / "lab.sh"), "--system", "--no-browser", f"--port={port}"]
        + [f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = []
    try:
        for line in server.stdout:  # the link it prints
            log.append(line)
            if f":{port}/" in line:
                break
        assert f"http://127.0.0.1:{port}/lab/tree/00_quickstart.ipynb?token=" in "".join(log), "".join(log)[-2000:]
        assert sorted(p.name for p in lab.glob("*.ipynb")) == sorted(p.name for p in tracked.parent.glob("*.ipynb"))

        api = f"http://127.0.0.1:{port}/api/contents/00_quickstart.ipynb"
        headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
        for _ in range(60):  # the server answers once its extensions are loaded
            try:
                with urllib.request.urlopen(urllib.request.Request(api, headers=headers)) as response:
                    model = json.load(response)
                break
            except OSError:
                time.sleep(1)
        notebook = model["content"]
        notebook["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "ran in the lab\n"}]
        notebook["cells"][1]["execution_count"] = 1
        body = json.dumps({"type": "notebook", "format": "json", "content": notebook}).encode()
        urllib.request.urlopen(urllib.request.Request(api, data=body, headers=headers, method="PUT")).close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert "ran in the lab" in (lab / "00_quickstart.ipynb").read_text()  # the user's copy has the outputs
    assert (lab / "00_quickstart.py").is_file()  # jupytext's paired file is written beside the copy
    assert tracked.read_bytes() == before_bytes
    assert added_files() == before_files  # nothing new in the clone, git-ignored files included
