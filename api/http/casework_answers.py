"""The API's answer to a casework service error (`api.service.casework_errors`): the error of the same
status (404, 409, else 422), with the service's message. One place, for every casework router."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from api.http.errors import Conflict, NotFound, Unprocessable
from api.service.casework_errors import CaseworkConflict, CaseworkError, CaseworkNotFound

__all__ = ["casework_answered"]


@contextmanager
def casework_answered() -> Iterator[None]:
    try:
        yield
    except CaseworkNotFound as exc:
        raise NotFound(str(exc)) from None
    except CaseworkConflict as exc:
        raise Conflict(str(exc)) from None
    except CaseworkError as exc:
        raise Unprocessable(str(exc)) from None
