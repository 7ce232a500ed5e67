from django.contrib import admin

from projects.models import Invite, Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "task", "created")
    search_fields = ("name",)
    inlines = [MembershipInline]


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ("project", "role", "created", "expires", "used", "revoked")
    exclude = ("token_hash",)
