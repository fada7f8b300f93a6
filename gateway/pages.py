"""The web console's pages and assets (gateway/console/), served as files."""

from __future__ import annotations

from pathlib import Path

import grpc
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from gateway.params import Query
from gateway.problems import Problem

CONSOLE = Path(__file__).resolve().parent / "console"
HOME = "/products"


class Pages:
    def __init__(self, root: Path = CONSOLE) -> None:
        self._root = root

    async def home(self, request: Request, query: Query) -> Response:
        return RedirectResponse(HOME, 307)

    def page(self, name: str) -> _Page:
        return _Page(self._root / "pages" / f"{name}.html")

    def static(self) -> StaticFiles:
        # check_dir=False: the app is built even where the console is not installed (its paths answer 404).
        return StaticFiles(directory=self._root / "static", check_dir=False)


class _Page:
    def __init__(self, path: Path) -> None:
        self._path = path

    async def __call__(self, request: Request, query: Query) -> Response:
        if not self._path.is_file():
            raise Problem(404, grpc.StatusCode.NOT_FOUND, f"page {self._path.stem} is not installed")
        # Always asked again: the pages are small, and a deployment changes them.
        return FileResponse(self._path, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})
