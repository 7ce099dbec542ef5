"""The error responses of the OpenAPI document, written once for every operation.

Every API error goes through one exception handler (`broker.api.exceptions`), so the same few shapes
and statuses can come from any operation; documenting them per view would repeat them on every view
and drift. This drf-spectacular post-processing hook adds them by what an operation takes:

- every operation behind a token: 401 (no or a bad token), 403 (a permission or another customer),
  429 (throttled, with Retry-After);
- a path parameter or a paginated list (`?page=` past the end): 404;
- query parameters or a request body: 400, naming each bad field;
- a request body: 413 (too large) and 415 (not JSON, a form or multipart);
- every operation behind a token, and every write: 503 (with Retry-After) when the server was too busy to
  give it a database connection in time, or, for a write, the database kept refusing it for lock
  conflicts.

A status that only some operations give (409 for an order's clientOrderId or a finished order) is
declared on the view with `extend_schema` (a description is enough: the hook adds the error body to
any 4xx/5xx declared without one); this hook never replaces what a view declares.
"""

from __future__ import annotations

from typing import Any

ERROR_COMPONENT = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "What was wrong: `detail` for the request as a whole, or one entry per bad field "
    "(`body` for the body as a whole), each a list of messages.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}}
WRITE_METHODS = {"post", "put", "patch", "delete"}
DESCRIPTIONS = {
    "400": "Malformed input: every bad field named.",
    "401": "No token, or an unknown one.",
    "403": "The caller lacks the permission (named in `detail`), or the customer is not the caller's.",
    "404": "Not found (or, on a list, a page past the end).",
    "413": "The request body is too large.",
    "415": "The body is not JSON (or a form).",
    "429": "Too many requests for this token; see Retry-After.",
    "503": "The database kept refusing the change for a lock conflict, or the server is saturated; try again "
    "after Retry-After.",
}


def _body() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}}


def _error(status: str) -> dict[str, Any]:
    response: dict[str, Any] = {"description": DESCRIPTIONS[status], "content": _body()}
    if status in ("429", "503"):
        response["headers"] = RETRY_AFTER
    return response


def _statuses(method: str, operation: dict[str, Any]) -> list[str]:
    parameters = operation.get("parameters", [])
    located = {parameter.get("in") for parameter in parameters}
    query = {parameter.get("name") for parameter in parameters if parameter.get("in") == "query"}
    has_body = "requestBody" in operation
    public = {} in operation.get("security", [{}]) and len(operation.get("security", [])) == 1
    statuses = [] if public else ["401", "403", "429"]
    if "path" in located or "page" in query:
        statuses.append("404")
    if query or has_body:
        statuses.append("400")
    if has_body:
        statuses += ["413", "415"]
    # Any operation may find the server saturated (no database connection in time); writes may also
    # lose a lock conflict. Health answers its own 503.
    if not public or method in WRITE_METHODS:
        statuses.append("503")
    return statuses


def document_errors(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry (see the module docstring)."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for status in _statuses(method, operation):
                responses.setdefault(status, _error(status))
            for status, response in responses.items():
                # A view's own error status (e.g. 409) gets the error body the handler sends with it.
                if status[0] in "45" and "content" not in response:
                    response["content"] = _body()
    return result
