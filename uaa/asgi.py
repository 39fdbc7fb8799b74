"""ASGI entry point."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "uaa.settings")
os.environ.setdefault("UAA_PROCESS", "web")  # the web process's database time limits (uaa/settings.py)
application = get_asgi_application()
