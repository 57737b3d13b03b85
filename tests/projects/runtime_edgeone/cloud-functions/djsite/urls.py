import json

from django.http import HttpResponse
from django.urls import path


def admin(request):
    return HttpResponse(json.dumps({"path": request.path, "path_info": request.path_info}),
                        content_type="application/json")


urlpatterns = [path("admin/", admin)]
