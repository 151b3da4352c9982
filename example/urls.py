from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from parley.views import content_security_policy

login_view = auth_views.LoginView.as_view(
    template_name="parley/login.html", redirect_authenticated_user=True
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", content_security_policy(login_view), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("parley.urls")),
]
