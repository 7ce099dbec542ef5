"""Documents the API serves as JSON or as a PDF (confirmations, statements): one renderer per
document, and errors that stay JSON whatever was asked for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response


def pdf_renderer(build: Callable[[dict[str, Any]], bytes], name: str) -> type[BaseRenderer]:
    """A renderer for `Accept: application/pdf` (or `?format=pdf`) that draws the view's data with `build`."""

    def render(
        self: BaseRenderer, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return build(data)

    attributes = {
        "__doc__": f"`Accept: application/pdf`: the {name} as a PDF.",
        "media_type": "application/pdf",
        "format": "pdf",
        "charset": None,
        "render_style": "binary",
        "render": render,
    }
    return type(f"{name.title().replace(' ', '')}PDFRenderer", (BaseRenderer,), attributes)


class JSONErrors:
    """For a view with a PDF renderer: an error is JSON whatever was asked for (a PDF of an error body
    would help nobody)."""

    def handle_exception(self, exc: Exception) -> Response:
        self.request.accepted_renderer = JSONRenderer()  # type: ignore[attr-defined]
        self.request.accepted_media_type = "application/json"  # type: ignore[attr-defined]
        return super().handle_exception(exc)  # type: ignore[misc]
