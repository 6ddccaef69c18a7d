"""Refusals as the API server words them: a metav1.Status body and its HTTP code."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


class ApiError(Exception):
    """An error answer: raised anywhere in the simulated API, sent as the Status it carries."""

    def __init__(self, code: int, reason: str, message: str, *, details: JSON | None = None, plain: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}
        self.plain = plain  # a plain-text answer (kube-apiserver's 404 for a group/version it does not serve)

    def status(self) -> JSON:
        body: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": self.message, "reason": self.reason, "code": self.code}  # fmt: skip
        if self.details:
            body["details"] = self.details
        return body


def _details(resource: str, name: str | None) -> JSON:
    kind, _, group = resource.partition(".")
    return {"kind": kind, **({"group": group} if group else {}), **({"name": name} if name else {})}


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', details=_details(resource, name))


def not_served(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"404 page not found: {path}", plain=True)


def already_exists(resource: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists', details=_details(resource, name))


def conflict(
    resource: str,
    name: str,
    why: str = "the object has been modified; please apply your changes to the latest version and try again",
) -> ApiError:
    return ApiError(
        409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": {why}', details=_details(resource, name)
    )


def invalid(resource: str, name: str, why: str) -> ApiError:
    return ApiError(422, "Invalid", f'{resource} "{name}" is invalid: {why}', details=_details(resource, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def not_allowed(method: str, what: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({method} {what})")


def forbidden(user: str, verb: str, resource: str, name: str | None, namespace: str | None) -> ApiError:
    kind, _, group = resource.partition(".")
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    subject = f'{kind} "{name}"' if name else kind
    message = (f'{subject} is forbidden: User "{user}" cannot {verb} resource "{kind}" in API group "{group}"{where}'
               ": the demo's RBAC lets only the people its policy names act")  # fmt: skip
    return ApiError(403, "Forbidden", message, details=_details(resource, name))


def success(message: str = "") -> JSON:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        **({"message": message} if message else {}),
    }
