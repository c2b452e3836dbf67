"""HTML pages (Jinja, autoescaped; data that changes is fetched by the static JS and set with textContent)."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from reasonry.errors import InputError
from reasonry.web import browse
from reasonry.web.steer_api import public_message

router = APIRouter()
_ENV: jinja2.Environment | None = None


def web_dir(name: str) -> Path:
    """A folder shipped with the package: templates or static."""
    return Path(str(resources.files("reasonry.web").joinpath(name)))


def env() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(web_dir("templates")), autoescape=True,
                                  undefined=jinja2.StrictUndefined)
        _ENV.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""
    return _ENV


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(env().get_template(name).render(**context), status_code=status)


MAX_PAGE = 1_000_000  # a bigger page number is shown as this one (empty), not an SQLite OverflowError


def _page(value: str | None) -> int:
    return min(MAX_PAGE, max(1, int(value))) if value and value.isdigit() and value.isascii() else 1


@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse("/steer", status_code=303)


@router.get("/steer")
def steer_page(request: Request) -> HTMLResponse:
    steerer = request.app.state.steerer
    return render("steer.html", page="steer", models=steerer.models, params=steerer.params.to_dict())


@router.get("/steer/batch")
def steer_batch_page(request: Request) -> HTMLResponse:
    steerer = request.app.state.steerer
    return render("steer_batch.html", page="batch", models=steerer.models, params=steerer.params.to_dict())


@router.get("/runs")
def runs_page(request: Request, page: str | None = None) -> HTMLResponse:
    number = _page(page)
    runs, total = browse.list_runs(request.app.state.store, number)
    return render("runs.html", page="runs", runs=runs, total=total, number=number, per_page=25)


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, page: str | None = None, q: str = "",
             model: Annotated[list[str] | None, Query()] = None) -> HTMLResponse:
    store = request.app.state.store
    try:
        run_id = store.resolve_run(run_id)
    except InputError as exc:
        return render("message.html", status=404, page="runs", title="Run not found",
                      message=public_message(request, exc))
    number = _page(page)
    data = browse.run_rows(store, run_id, models=model or None, text=q[:500], page=number)
    all_models = [m["label"] for m in data.run["models"]]

    def page_url(n: int) -> str:
        query = [("model", m) for m in model or []] + ([("q", q)] if q else []) + [("page", str(n))]
        return f"/runs/{quote(run_id)}?{urlencode(query)}"

    return render("run.html", page="runs", data=data, all_models=all_models, chosen=model or [], q=q,
                  number=number, per_page=20, page_url=page_url)


@router.get("/debates")
def debates_page(request: Request) -> HTMLResponse:
    return render("debates.html", page="debates", debates=browse.list_debates(request.app.state.store))


@router.get("/debates/{run_id}")
def debate_page(request: Request, run_id: str) -> HTMLResponse:
    roots, count = browse.debate_tree(request.app.state.store, run_id)
    if not count:
        return render("message.html", status=404, page="debates", title="Debate not found",
                      message=f"no debate nodes for run {run_id}")
    return render("debate.html", page="debates", run_id=run_id, roots=roots, count=count)
