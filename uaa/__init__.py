"""UAA: the Django project and its OAuth 2.0 / OpenID Connect wiring."""

from uaa.celery import app as celery_app

__all__ = ["celery_app"]
