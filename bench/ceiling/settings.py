"""Settings, URLconf and view of the ceiling (bench/run.py): what any Django endpoint costs on this machine.

No middleware, no installed apps, no database: the request goes through gunicorn, Django's WSGI handler,
URL resolution and one view that returns a small constant body, and nothing else.
"""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse
from django.urls import path

DEBUG = False
SECRET_KEY = os.environ["SECRET_KEY"]
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
ROOT_URLCONF = __name__
USE_TZ = True


def empty(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b'{"ok":true}', content_type="application/json")


urlpatterns = [path("", empty)]
