"""The console's built files (`services/gateway/console/dist/`, `SKYBRIDGE_CONSOLE_DIR`),
served by path: `GET /` and any path without a file extension answer `index.html` (the
console routes in the page), a file answers itself, nothing outside the folder is
reachable. When the console is not built, `/` says so and how to build it."""

from __future__ import annotations

import asyncio
import mimetypes
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

NOT_BUILT = (
    b"<!doctype html><meta charset=utf-8><title>Skybridge console not built</title>"
    b"<h1>The Skybridge console is not built</h1>"
    b"<p>The gateway serves every RPC at <code>/&lt;package&gt;.&lt;Service&gt;/&lt;Method&gt;"
    b"</code>; the console needs Node.js and npm: run <code>make console</code> (or "
    b"<code>make run</code>, which builds it when Node.js is installed).</p>"
)

_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
          ".html": "text/html; charset=utf-8", ".json": "application/json",
          ".wasm": "application/wasm", ".svg": "image/svg+xml", ".glb": "model/gltf-binary",
          ".ktx2": "image/ktx2", ".czml": "application/json", ".png": "image/png",
          ".jpg": "image/jpeg", ".woff2": "font/woff2", ".map": "application/json"}
#: Largest file served (Cesium's biggest bundled file is a few MB).
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ConsoleFile:
    body: bytes
    content_type: str
    cache_control: str


class ConsoleFiles:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def built(self) -> bool:
        return (self.root / "index.html").is_file()

    def locate(self, url_path: str) -> Path | None:
        """The file for `url_path`, or None when there is none (or it is outside root)."""
        parts = PurePosixPath(unquote(url_path)).parts[1:]
        if any(part in ("..", "") or "\\" in part or "\x00" in part for part in parts):
            return None
        if not parts or "." not in parts[-1]:
            return self.root / "index.html"
        candidate = (self.root.joinpath(*parts)).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    async def read(self, url_path: str) -> ConsoleFile | None:
        found = self.locate(url_path)
        if found is None or not found.is_file() or found.stat().st_size > MAX_FILE_BYTES:
            return None
        body = await asyncio.to_thread(found.read_bytes)
        content_type = _TYPES.get(found.suffix.lower()) or (
            mimetypes.guess_type(found.name)[0] or "application/octet-stream")
        is_index = found.name == "index.html"
        return ConsoleFile(body, content_type,
                           "no-cache" if is_index else "public, max-age=3600")
