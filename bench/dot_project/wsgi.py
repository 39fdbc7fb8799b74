"""WSGI entry point of vanilla django-oauth-toolkit: gunicorn bench.dot_project.wsgi."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.dot_project.settings")
application = get_wsgi_application()
