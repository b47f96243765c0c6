from django.urls import re_path

from apps.tenants.api import views
from quantumfleet.api.routers import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("tenants", views.TenantViewSet, basename="tenant")

urlpatterns = [
    *router.urls,
    re_path(
        r"^tenants/(?P<tenant_id>\d+)/users/?$",
        views.TenantMemberListView.as_view(),
        name="tenant-members",
    ),
    re_path(
        r"^tenants/(?P<tenant_id>\d+)/users/(?P<user_id>\d+)/roles/?$",
        views.UserRoleListView.as_view(),
        name="tenant-user-roles",
    ),
    re_path(
        r"^tenants/(?P<tenant_id>\d+)/users/(?P<user_id>\d+)/roles/(?P<role>[^/]+)/?$",
        views.UserRoleDetailView.as_view(),
        name="tenant-user-role",
    ),
]
