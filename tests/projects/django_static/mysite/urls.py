from django.http import HttpResponse
from django.urls import path

urlpatterns = [
    path("", lambda request: HttpResponse("django home")),
    path("api/index", lambda request: HttpResponse("django api")),
]
