"""Request guards that apply to every screen and endpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from whitenoise.middleware import WhiteNoiseMiddleware

NUL = "\x00"


# Both middlewares here run in the mode of the handler they wrap. Under ASGI the whole chain is then
# async and a request crosses into a thread once, for the view; one sync-only middleware in the chain
# made every request hop loop -> thread -> loop -> thread (Django adapts at each sync/async boundary).


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise's static file serving, usable in an async middleware chain as well as a sync one.

    The lookup is in memory (or, with autorefresh in development, a stat of the finders' files).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        static_file = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)


class RejectNullCharactersMiddleware:
    """A NUL character in the path, the query string or a form field is a 400 naming it.

    Postgres cannot store or even compare a text value containing NUL (psycopg raises before the
    query is sent), so without this guard such input would be a 500 wherever it reaches a lookup.
    No legitimate input contains one. JSON bodies are covered by DRF's fields, uploaded files by
    their own readers.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        refused = self._refusal(request)
        return refused if refused is not None else self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        response = self.get_response(request)
        assert isinstance(response, Awaitable)
        return await response

    def _refusal(self, request: HttpRequest) -> HttpResponse | None:
        where = self._where(request)
        if where is None:
            return None
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
