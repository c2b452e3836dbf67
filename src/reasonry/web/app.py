"""Assemble the FastAPI app around a Steerer."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from reasonry.errors import ReasonryError
from reasonry.tasks.steer import Steerer
from reasonry.web import openai_api, pages, steer_api
from reasonry.web.security import Guard

MAX_BODY = 1 << 20


def create_app(steerer: Steerer, *, token: str | None = None, max_body: int = MAX_BODY) -> Guard:
    """The ASGI app: FastAPI wrapped in the Guard (token, same-origin writes, body limit, CSP)."""
    app = FastAPI(title="reasonry", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.steerer = steerer
    app.state.store = steerer.store
    app.mount("/static", StaticFiles(directory=pages.web_dir("static")), name="static")
    app.include_router(pages.router)
    app.include_router(steer_api.router)
    app.include_router(openai_api.router)

    @app.exception_handler(ReasonryError)
    async def user_error(request: Request, exc: ReasonryError) -> JSONResponse:
        message = steer_api.public_message(request, exc)
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=400)

    guarded = Guard(app, token=token, max_body=max_body)
    guarded.fastapi = app  # type: ignore[attr-defined]
    return guarded
