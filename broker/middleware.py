"""Request guards that apply to every screen and endpoint."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

NUL = "\x00"


class RejectNullCharactersMiddleware:
    """A NUL character in the path, the query string or a form field is a 400 naming it.

    Postgres cannot store or even compare a text value containing NUL (psycopg raises before the
    query is sent), so without this guard such input would be a 500 wherever it reaches a lookup.
    No legitimate input contains one. JSON bodies are covered by DRF's fields, uploaded files by
    their own readers.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        where = self._where(request)
        if where is None:
            return self.get_response(request)
        message = f"{where} contains a NUL character (\\x00), which no field accepts."
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": message}, status=400)
        return render(request, "400.html", {"message": message}, status=400)

    @staticmethod
    def _where(request: HttpRequest) -> str | None:
        if NUL in request.path:
            return "The address"
        for name, values in request.GET.lists():
            if NUL in name or any(NUL in value for value in values):
                return f"The query parameter {name!r}"
        if request.method == "POST":
            for name, values in request.POST.lists():
                if NUL in name or any(NUL in value for value in values):
                    return f"The field {name!r}"
        return None
