"""The web dashboard: a static single-page app served by the REST process.

The files under :data:`STATIC_DIR` (``index.html``, ``app.js`` and its ES modules,
``style.css``) are plain HTML, CSS and vanilla JavaScript modules: no framework, no build
step and no CDN, so the dashboard works on an air-gapped host. The REST app
(:func:`fotakit.api.create_app`) mounts the folder at ``/ui/`` and serves ``index.html``
at ``/``. The files themselves need no authentication; the page asks for a bearer token
(kept in ``localStorage``) and calls ``/api/v1`` with it, and the server-sent events
stream with ``?access_token=``.

Pages (hash routes): ``#/fleet``, ``#/devices/<endpoint>``, ``#/packages``,
``#/campaigns``, ``#/campaigns/new``, ``#/campaigns/<id>``. Charts are inline SVG drawn
by the page's own small code. Limits: the page shows what the API returns and nothing
more; it keeps no state beyond the token, and live updates stop when the SSE stream
fails (the campaign page then falls back to polling ``/progress``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

#: The folder of the static files (mounted at ``/ui/`` by the REST app).
STATIC_DIR: Final[Path] = Path(__file__).resolve().parent / "static"

#: The page served at ``/`` and for ``/ui/``.
INDEX_HTML: Final[Path] = STATIC_DIR / "index.html"

__all__ = ["INDEX_HTML", "STATIC_DIR"]
