from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import TemplateView

from parley.views import content_security_policy

login_view = auth_views.LoginView.as_view(
    template_name="parley/login.html", redirect_authenticated_user=True
)

home_view = TemplateView.as_view(template_name="home.html")

urlpatterns = [
    path("site/", content_security_policy(home_view), name="home"),
    path("admin/", admin.site.urls),
    path("login/", content_security_policy(login_view), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("parley.urls")),
]
