import django
from django.conf import settings
from django.http import JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="conformance-fixture",
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
)
django.setup()


def hello(request):
    return JsonResponse({"path": request.path, "path_info": request.path_info})


urlpatterns = [path("hello/", hello)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
