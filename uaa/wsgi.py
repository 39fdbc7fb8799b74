"""WSGI entry point (gunicorn uaa.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "uaa.settings")
os.environ.setdefault("UAA_PROCESS", "web")  # the web process's database time limits (uaa/settings.py)
application = get_wsgi_application()
