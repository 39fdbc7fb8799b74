"""schemathesis hooks for tests/api/test_api_schemathesis.py (``SCHEMATHESIS_HOOKS``): keep the run off the
two resources whose change would end the run itself, and nothing else.

- the run's own client (``UAA_SCHEMATHESIS_CLIENT_ID``): DELETE deletes its tokens, a PATCH may take its
  admin scopes away, and both leave every later request a 401 or 403 (rotating its secret stays in: the run
  asks for no second token);
- the signing key of the run's token (``UAA_SCHEMATHESIS_KID``): revoking it ends the token (by design:
  docs/api.md, Signing keys).

A write to either is sent to an id that does not exist instead (a documented 404). Reads of them, and every
other client, key and user, stay in the run; so does every operation.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

CLIENT_ID = os.environ.get("UAA_SCHEMATHESIS_CLIENT_ID", "")
KID = os.environ.get("UAA_SCHEMATHESIS_KID", "")
ELSEWHERE = "kept-out-of-the-run"


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.method.upper() in ("GET", "HEAD", "OPTIONS") or not case.path_parameters:
        return
    if (
        case.method.upper() in ("DELETE", "PATCH")
        and CLIENT_ID
        and case.path_parameters.get("client_id") == CLIENT_ID
    ):
        case.path_parameters["client_id"] = ELSEWHERE
    if KID and case.path_parameters.get("kid") == KID:
        case.path_parameters["kid"] = ELSEWHERE
