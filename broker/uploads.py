"""A bound on uploaded files that holds while the request is parsed, not after it has been read.

Django streams an upload to memory (small) or to a temporary file and only then hands it to the view,
whose size check would come after the whole file was stored. `BoundedUploadHandler` is the first of
`FILE_UPLOAD_HANDLERS`: it stops storing a file as soon as it is known to be over
`FILE_UPLOAD_MAX_BYTES` (from the request's Content-Length before a byte is read, or from the bytes
received so far without one) and skips the rest of it, so the file never reaches `request.FILES`. The
other fields of the form (the CSRF token) are still parsed. The view asks `upload_refusal(request)`
and shows the message next to its file field.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest

# Room for the other fields and the multipart headers next to a file of the maximum size.
FORM_OVERHEAD_BYTES = 64 * 1024


def upload_limit() -> int:
    return int(settings.FILE_UPLOAD_MAX_BYTES)


def upload_limit_message() -> str:
    limit = upload_limit()
    size = f"{limit // (1024 * 1024)} MB" if limit % (1024 * 1024) == 0 else f"{limit:,} bytes"
    return f"The file is larger than {size}, the upload limit (FILE_UPLOAD_MAX_BYTES)."


def upload_refusal(request: HttpRequest) -> dict[str, str]:
    """File field name -> why its upload was refused, for the files `BoundedUploadHandler` skipped."""
    return dict(getattr(request, "_refused_uploads", {}))


class BoundedUploadHandler(FileUploadHandler):
    def __init__(self, request: Any = None):
        super().__init__(request)
        self.received = 0
        self.request_too_large = False

    def handle_raw_input(
        self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: str | None = None
    ) -> None:
        # Decided before a byte is read: a body this large cannot hold an acceptable file.
        self.request_too_large = content_length > upload_limit() + FORM_OVERHEAD_BYTES
        return None

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        self.received = 0
        if self.request_too_large:
            self._refuse()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > upload_limit():
            self._refuse()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handlers store the file

    def _refuse(self) -> None:
        if self.request is not None:
            refused: dict[str, str] = getattr(self.request, "_refused_uploads", {})
            refused[self.field_name] = upload_limit_message()
            setattr(self.request, "_refused_uploads", refused)  # noqa: B010 (a private mark on the request)
        raise SkipFile()
