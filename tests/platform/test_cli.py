"""`python -m shared.call`: reflection, calls and error reports from the command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.probe.server import build

ROOT = Path(__file__).resolve().parent.parent.parent


async def run_cli(settings, port: int, *args: str) -> tuple[int, str, str]:
    env = dict(os.environ, SKYBRIDGE_JWT_PRIVATE_KEY=str(settings.jwt_private_key_path),
               SKYBRIDGE_JWT_PUBLIC_KEY=str(settings.jwt_public_key_path),
               SKYBRIDGE_DEV_KEYS="false", PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.call", f"127.0.0.1:{port}", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_cli_lists_calls_and_reports_errors(settings):
    kit = await build(settings)
    await kit.server.start()
    await kit.server.become_ready()
    port = kit.server.port
    try:
        code, out, _ = await run_cli(settings, port, "list")
        assert code == 0
        assert {"grpc.health.v1.Health", "skybridge.testing.v1.ProbeService"} <= set(out.split())

        code, out, _ = await run_cli(settings, port, "skybridge.testing.v1.ProbeService/Echo",
                                     '{"message": "hi"}', "--scope", "probe.read",
                                     "--tenant", "contoso")
        assert code == 0
        assert json.loads(out) == {"message": "hi", "subject": "cli", "tenant": "contoso"}

        code, _, err = await run_cli(settings, port,
                                     "skybridge.testing.v1.ProbeService/CreateNote",
                                     '{"note": {"text": "", "priority": 12}}',
                                     "--scope", "probe.write")
        report = json.loads(err)
        assert code == 1
        assert report["code"] == "INVALID_ARGUMENT"
        assert {v["field"] for v in report["fieldViolations"]} == {"note.text", "note.priority"}

        code, _, err = await run_cli(settings, port, "skybridge.testing.v1.ProbeService/Echo")
        assert code == 1 and json.loads(err)["code"] == "UNAUTHENTICATED"
    finally:
        await kit.server.drain(0)
