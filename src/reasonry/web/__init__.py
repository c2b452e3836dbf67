"""The local web app: Steer, Runs and Debates pages, a JSON API, and OpenAI-compatible endpoints."""

from reasonry.web.app import create_app

__all__ = ["create_app"]
