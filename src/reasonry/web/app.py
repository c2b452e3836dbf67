"""Assemble the FastAPI app around a Steerer."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

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

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        """404/405 and friends in the same one-line error shape as every other refusal."""
        return JSONResponse({"error": {"message": f"{request.method} {request.url.path}: {exc.detail}",
                                       "type": "invalid_request_error"}}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def query_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        """A malformed query or path parameter (e.g. ?a=x where a number is wanted): one line, 400."""
        error = exc.errors()[0] if exc.errors() else {}
        name = ".".join(str(part) for part in error.get("loc", ())[1:]) or "request"
        message = f"{name}: {error.get('msg', 'invalid value')}".replace("\n", " ")
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=400)

    guarded = Guard(app, token=token, max_body=max_body)
    guarded.fastapi = app  # type: ignore[attr-defined]
    return guarded
