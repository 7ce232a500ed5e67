"""API keys: create (the secret is shown once), revoke, usage. djangorestframework-api-key hashes them."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from config.sql import RowSelect, db_value
from projects.models import KeyUsage, Project, ProjectAPIKey


def api_key_create(*, project: Project, name: str, scope: str, created_by=None) -> tuple[ProjectAPIKey, str]:
    name = (name or "").strip() or "API key"
    if len(name) > 50:
        raise ValidationError({"name": "Key names are at most 50 characters."})
    if scope not in ProjectAPIKey.Scope.values:
        raise ValidationError({"scope": "Scope must be 'full' or 'invoke'."})
    key_obj, key = ProjectAPIKey.objects.create_key(name=name, project=project, scope=scope, created_by=created_by)
    return key_obj, key


def api_key_revoke(*, key: ProjectAPIKey) -> None:
    # Checked on every request by get_usable_keys(), so it takes effect on the next one.
    ProjectAPIKey.objects.filter(pk=key.pk).update(revoked=True)


def _key_join(q, meta) -> str:
    return (
        f"JOIN {q(meta('p').db_table)} {q('p')} "
        f"ON {q('p')}.{q(meta('p').pk.column)} = {q('k')}.{q(meta('k').get_field('project').column)}"
    )


def _key_where(q, meta) -> str:
    return (
        f"{q('k')}.{q(meta('k').get_field('prefix').column)} = %s "
        f"AND {q('k')}.{q(meta('k').get_field('revoked').column)} = %s"
    )


def api_key_select(*, tables=(), joins=None) -> RowSelect:
    """The key lookup's SELECT (the key ``k`` joined to its project ``p``), with more ``tables`` joined
    by ``joins(q, meta)`` for a caller above this app that needs a row of its own in the same query."""
    return RowSelect(
        [("k", ProjectAPIKey), ("p", Project), *tables],
        joins=lambda q, meta: _key_join(q, meta) + (" " + joins(q, meta) if joins else ""),
        where=_key_where,
    )


_KEY_WITH_PROJECT = api_key_select()


def api_key_from_secret(*, secret: str, select: RowSelect = _KEY_WITH_PROJECT, join_params=()) -> ProjectAPIKey:
    """The usable (unrevoked, unexpired) key whose secret this is, its project loaded in the same query
    (every API request needs both); raises ProjectAPIKey.DoesNotExist otherwise. Never cached: a revoke
    (or a project being deleted) takes effect on the next request, in every process. One plain SELECT
    (config.sql): the ORM's queryset compiling cost more than the database's answer.

    ``select`` (from ``api_key_select``) with its joins' ``join_params`` adds rows to the same query;
    they are on ``key.joined_rows``, in the order of its tables."""
    prefix, _, _ = secret.partition(".")
    found = select.fetch([*join_params, prefix, db_value(ProjectAPIKey, "revoked", False)])
    if found is None:
        raise ProjectAPIKey.DoesNotExist("No usable key has this prefix.")
    key, project, *joined = found
    ProjectAPIKey._meta.get_field("project").set_cached_value(key, project)
    if key.has_expired or not key.is_valid(secret):
        raise ProjectAPIKey.DoesNotExist("Key is not valid.")
    key.joined_rows = joined
    return key


def api_key_list(*, project: Project) -> list[ProjectAPIKey]:
    return list(ProjectAPIKey.objects.filter(project=project).order_by("revoked", "-created"))


def api_key_record_use(*, key: ProjectAPIKey) -> None:
    """Count a request: last use, total, and today's row (created on the first request of the day).
    One transaction: one commit (one WAL flush) rather than one per statement."""
    now = timezone.now()
    today = now.date()
    with transaction.atomic():
        ProjectAPIKey.objects.filter(pk=key.pk).update(last_used=now, request_count=F("request_count") + 1)
        if KeyUsage.objects.filter(api_key=key, day=today).update(count=F("count") + 1):
            return
        try:
            with transaction.atomic():
                KeyUsage.objects.create(api_key=key, day=today, count=1)
        except IntegrityError:  # another request created today's row first
            KeyUsage.objects.filter(api_key=key, day=today).update(count=F("count") + 1)


def api_usage_by_day(*, project: Project, days: int = 14) -> list[dict]:
    since = timezone.now().date() - timezone.timedelta(days=days - 1)
    rows = (
        KeyUsage.objects.filter(api_key__project=project, day__gte=since)
        .values("day", "api_key__name", "api_key__prefix")
        .annotate(n=Sum("count"))
        .order_by("-day", "api_key__name")
    )
    return [{"day": r["day"], "key": r["api_key__name"], "prefix": r["api_key__prefix"], "count": r["n"]} for r in rows]


def api_requests_today(project_ids: list) -> dict:
    """Dashboard figure: API requests per project today."""
    today = timezone.now().date()
    rows = (
        KeyUsage.objects.filter(api_key__project_id__in=project_ids, day=today)
        .values("api_key__project_id")
        .annotate(n=Sum("count"))
    )
    return {r["api_key__project_id"]: {"api_requests_today": r["n"]} for r in rows}
