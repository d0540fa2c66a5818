"""The OpenAPI schema at /api/v1/schema/ covers /api/v1/ only: the OpenAI-compatible
/v1/ follows OpenAI's own published schema, and the pages are not an API."""

from __future__ import annotations

PREFIX = "/api/v1/"
NOT_THE_API = ("/api/v1/schema/", "/api/v1/docs/")


def only_the_api(endpoints):
    return [
        endpoint
        for endpoint in endpoints
        if endpoint[0].startswith(PREFIX) and not endpoint[0].startswith(NOT_THE_API)
    ]
