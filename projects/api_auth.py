"""API authentication: a project API key as `Authorization: Bearer <key>`, or a member's session."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import authentication, exceptions, permissions

from config.after_response import after_response
from projects.access import ProjectAccess, parse_uuid, project_access_get
from projects.models import ProjectAPIKey
from projects.roles import Role

# What a key may do, expressed as the member role it acts with.
KEY_ROLE = {ProjectAPIKey.Scope.FULL: Role.ADMIN, ProjectAPIKey.Scope.INVOKE: Role.VIEWER}


class ProjectKeyAuthentication(authentication.BaseAuthentication):
    def lookup(self, request, secret: str) -> ProjectAPIKey:
        """The usable key for this secret (ProjectAPIKey.DoesNotExist otherwise). A view may read more
        in the same query with its own ``key_lookup(secret=...)`` (invoke: the deployed model's id)."""
        view = (request.parser_context or {}).get("view")
        custom = getattr(view, "key_lookup", None)
        if custom is not None:
            return custom(secret=secret)
        from projects.keys import api_key_from_secret

        return api_key_from_secret(secret=secret)

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").strip()
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise exceptions.AuthenticationFailed("Send the key as 'Authorization: Bearer <api key>'.")
        from projects.keys import api_key_record_use

        try:
            api_key = self.lookup(request, key.strip())
        except ProjectAPIKey.DoesNotExist:
            from inference.throttles import auth_failure_hit

            wait = auth_failure_hit(request)
            if wait is not None:  # guessing keys from one address: slowed down
                raise exceptions.Throttled(
                    wait=wait, detail="Too many failed authentications from this address."
                ) from None
            raise exceptions.AuthenticationFailed("The API key is invalid or has been revoked.") from None
        # Counted once the answer is out: the usage rows are bookkeeping the caller need not wait for.
        after_response(request, lambda: api_key_record_use(key=api_key))
        return (AnonymousUser(), api_key)

    def authenticate_header(self, request):
        return 'Bearer realm="pictor"'


class SessionAuthentication(authentication.SessionAuthentication):
    """DRF's session auth (with CSRF); a request without credentials still answers 401 via the key auth."""


class HasUserOrKey(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated) or isinstance(request.auth, ProjectAPIKey)


def api_access(request, project_id, *, minimum: str = Role.VIEWER, invoke: bool = False) -> ProjectAccess:
    """The API's access check. Keys work only on their own project (404 elsewhere); an invoke-scoped
    key reaches only the endpoints that pass invoke=True (403 elsewhere)."""
    key = request.auth if isinstance(request.auth, ProjectAPIKey) else None
    if key is None:
        return project_access_get(user=request.user, project_id=project_id, minimum=minimum)
    pid = parse_uuid(project_id)
    if pid is None or key.project_id != pid or key.project.deleting:
        raise Http404("No such project.")
    if key.scope == ProjectAPIKey.Scope.INVOKE and not invoke:
        raise PermissionDenied("This API key may only invoke the model; use a key with the full scope.")
    role = KEY_ROLE[key.scope]
    if key.scope == ProjectAPIKey.Scope.FULL and Role(minimum) == Role.OWNER:
        raise PermissionDenied("API keys cannot do what only an owner may.")
    return ProjectAccess(project=key.project, role=role, api_key=key)
