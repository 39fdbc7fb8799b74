"""The admin REST API under /api/v1/ (djangorestframework; docs/api.md, docs/openapi.yaml).

Every request carries an access token from this server (RFC 6750 §2.1) whose scopes name what it may do
(settings.UAA_ADMIN_SCOPES); every change goes through the services the Django admin uses and is recorded
in the audit ledger with the calling client as actor. One module per resource:

* ``auth``: the bearer-token authentication and the scope permission (RFC 6750 §3);
* ``errors``: the JSON body parser (bounded, strict) and the one error renderer;
* ``fields``: strict field types and the redirect URI rule shared by the resources;
* ``clients``, ``keys``: the resources; ``urls``: the routes and the OpenAPI document.
"""
