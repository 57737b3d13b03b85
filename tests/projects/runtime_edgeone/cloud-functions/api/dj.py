"""A Django project's WSGI application mounted at /api/dj (EdgeOne layout)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
