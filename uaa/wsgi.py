"""WSGI entry point (gunicorn uaa.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "uaa.settings")
application = get_wsgi_application()
