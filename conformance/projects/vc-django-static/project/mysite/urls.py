from django.http import HttpResponse, JsonResponse
from django.templatetags.static import static
from django.urls import path


def home(request):
    return HttpResponse("django home", content_type="text/plain")


def info(request):
    return JsonResponse({"path": request.path, "css": static("web/style.css")})


urlpatterns = [path("", home), path("info/", info)]
