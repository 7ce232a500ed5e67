from django.urls import path

from projects import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("accounts/signup/", views.signup, name="signup"),
    path("projects/new/", views.project_create, name="project_create"),
    path("projects/<uuid:project_id>/", views.project_detail, name="project_detail"),
    path("projects/<uuid:project_id>/settings/", views.project_settings, name="project_settings"),
    path("projects/<uuid:project_id>/delete/", views.project_delete, name="project_delete"),
    path("projects/<uuid:project_id>/members/", views.members, name="members"),
    path("projects/<uuid:project_id>/members/add/", views.member_add, name="member_add"),
    path(
        "projects/<uuid:project_id>/members/<uuid:membership_id>/role/",
        views.member_role,
        name="member_role",
    ),
    path(
        "projects/<uuid:project_id>/members/<uuid:membership_id>/remove/",
        views.member_remove,
        name="member_remove",
    ),
    path("projects/<uuid:project_id>/leave/", views.project_leave, name="project_leave"),
    path("projects/<uuid:project_id>/invites/", views.invite_create, name="invite_create"),
    path(
        "projects/<uuid:project_id>/invites/<uuid:invite_id>/revoke/",
        views.invite_revoke,
        name="invite_revoke",
    ),
    path("invite/<str:token>/", views.invite_accept, name="invite_accept"),
]
