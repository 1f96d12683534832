"""``python -m fotakit.api.openapi``: print the API's OpenAPI document (JSON).

The document does not depend on any running part, so it is built from an empty
:class:`~fotakit.api.ApiContext`. docs/openapi.json is this output; a test keeps the two
equal (regenerate with ``python -m fotakit.api.openapi > docs/openapi.json``).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def openapi_document() -> dict[str, Any]:
    from fotakit.api.app import create_app
    from fotakit.api.context import ApiContext

    doc: dict[str, Any] = create_app(ApiContext()).openapi()
    return doc


def openapi_json() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    sys.stdout.write(openapi_json())


if __name__ == "__main__":
    main()
