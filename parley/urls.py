from django.urls import path

app_name = "parley"
urlpatterns: list = []
