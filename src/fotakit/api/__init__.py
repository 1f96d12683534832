"""The REST API of a fotakit server (FastAPI): devices, packages, campaigns, jobs, tokens,
server-sent events, plus ``/fw`` delivery and the dashboard in the same app.

::

    ctx = ApiContext(server=server, service=service, repository=repository, tokens=tokens)
    app = create_app(ctx)
    http = await serve_api(app, "127.0.0.1", 8080)

Routes and shapes: docs/rest-api.md and docs/openapi.json. Authentication: bearer tokens
with roles (:mod:`fotakit.api.auth`). Errors: problem documents (:mod:`fotakit.api.problems`).
"""

from fotakit.api.app import create_app
from fotakit.api.auth import Role, TokenStore
from fotakit.api.common import API_PREFIX
from fotakit.api.context import ApiContext
from fotakit.api.server import ApiHttpServer, serve_api

__all__ = [
    "API_PREFIX",
    "ApiContext",
    "ApiHttpServer",
    "Role",
    "TokenStore",
    "create_app",
    "serve_api",
]
