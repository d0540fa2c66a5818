"""/v1/: the OpenAI fine-tuning API, so that the official ``openai`` client works with
``base_url`` set to Jingtiao (docs/api.md). Same tokens, gate and services as
/api/v1/; errors in OpenAI's shape."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.http import Http404
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Project
from api import scope
from api.openai import files, jobs, objects
from api.openai.jobs import FILE, JOB, Refused, ref_id
from finetune.models import Dataset, Job
from finetune.services import jobs as services

MAX_LIMIT = 100
#: the client's header naming the project (``OpenAI(project=...)``): its id or name
PROJECT_HEADER = "HTTP_OPENAI_PROJECT"


@extend_schema(exclude=True)
class OpenAIView(APIView):
    parser_classes = [JSONParser]

    def handle_exception(self, exc):
        if isinstance(exc, Refused):
            return Response(objects.error(exc.message, exc.param, exc.code), status=exc.status)
        if isinstance(exc, Http404):
            return Response(objects.error(_("No such object."), None, "not_found"), status=404)
        if isinstance(exc, ValidationError):
            first = next(iter(getattr(exc, "message_dict", {"": exc.messages}).items()))
            return Response(objects.error(" ".join(first[1]), first[0] or None), status=400)
        if isinstance(exc, exceptions.APIException):
            response = super().handle_exception(exc)
            detail = exc.detail
            message = detail if isinstance(detail, str) else str(detail)
            kind = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
            response.data = objects.error(
                message,
                None,
                exc.get_codes() if isinstance(exc.get_codes(), str) else None,
                kind.get(response.status_code, "invalid_request_error"),
            )
            return response
        return super().handle_exception(exc)

    def project(self, request: Request) -> Project:
        wanted = request.META.get(PROJECT_HEADER, "").strip()
        mine = scope.projects(request)
        if wanted:
            found = next((p for p in mine if str(p.pk) == wanted or p.name == wanted), None)
            if found is None:
                raise Refused(
                    _("You may not act in the project %(p)s.") % {"p": wanted},
                    None,
                    "project_not_allowed",
                    status=403,
                )
            return found
        if len(mine) != 1:
            raise Refused(
                _(
                    "Name the project with the OpenAI-Project header (or the client's "
                    "project=): this token may act in several."
                ),
                None,
                "project_required",
            )
        return mine[0]


def _page(request: Request, objects_qs, prefix: str, render) -> dict:
    """OpenAI's list: newest first, ``after`` an id of the last page, ``limit`` at most 100."""
    query = request.query_params
    try:
        limit = int(query.get("limit", 20))
    except ValueError:
        raise Refused(_("“limit” must be a whole number."), "limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise Refused(_("“limit” must lie between 1 and %(n)d.") % {"n": MAX_LIMIT}, "limit")
    after = query.get("after")
    if after:
        pk = ref_id(after, prefix)
        if pk is None:
            raise Refused(_("“after” must be an id of the list."), "after")
        objects_qs = objects_qs.filter(pk__lt=pk)
    rows = list(objects_qs.order_by("-pk")[: limit + 1])
    return {
        "object": "list",
        "data": [render(r) for r in rows[:limit]],
        "has_more": len(rows) > limit,
    }


class FilesView(OpenAIView):
    parser_classes = [MultiPartParser, FormParser]

    def post(self, request: Request) -> Response:
        purpose = request.data.get("purpose")
        if purpose != "fine-tune":
            raise Refused(_("Only files of purpose “fine-tune” are taken."), "purpose")
        upload = request.FILES.get("file")
        if upload is None:
            raise Refused(_("Send the file as “file”."), "file")
        dataset = files.create_file(request.user, self.project(request), upload)
        return Response(objects.file_object(dataset), status=status.HTTP_200_OK)

    def get(self, request: Request) -> Response:
        datasets = scope.restrict(
            Dataset.objects.filter(
                project=self.project(request), scenario__code__in=files.SCENARIOS.values()
            ),
            request,
        )
        return Response(_page(request, datasets, FILE, objects.file_object))


class FileView(OpenAIView):
    def get(self, request: Request, file_id: str) -> Response:
        pk = ref_id(file_id, FILE)
        if pk is None:
            raise Http404
        dataset = scope.get(Dataset.objects.all(), request, pk=pk)
        return Response(objects.file_object(dataset))


JOB_RELATED = ("pretrained_model", "algorithm", "model_repo", "output_version", "project")


def _job(request: Request, job_id: str, action: str = "view") -> Job:
    pk = ref_id(job_id, JOB)
    if pk is None:
        raise Http404
    return scope.get(Job.objects.select_related(*JOB_RELATED), request, action, pk=pk)


class JobsView(OpenAIView):
    def post(self, request: Request) -> Response:
        job = jobs.create(request, self.project(request), request.data)
        return Response(objects.job_object(_job(request, f"{JOB}{job.pk}")))

    def get(self, request: Request) -> Response:
        found = scope.restrict(
            Job.objects.filter(project=self.project(request)).select_related(*JOB_RELATED), request
        )
        for number, (key, value) in enumerate(request.query_params.items()):
            if key.startswith("metadata[") and key.endswith("]"):
                # the key is a JSON key, never a lookup ("a__regex" is a key like another)
                text = KeyTextTransform(key[9:-1], KeyTransform("metadata", "metadata"))
                found = found.alias(**{f"meta_{number}": text}).filter(**{f"meta_{number}": value})
        return Response(_page(request, found, JOB, objects.job_object))


class JobView(OpenAIView):
    def get(self, request: Request, job_id: str) -> Response:
        return Response(objects.job_object(_job(request, job_id)))


class CancelView(OpenAIView):
    def post(self, request: Request, job_id: str) -> Response:
        job = _job(request, job_id, "stop")
        try:
            services.stop_job(request.user, job)
        except ValidationError as exc:
            raise Refused(" ".join(exc.messages), None, "invalid_state") from exc
        return Response(objects.job_object(_job(request, job_id)))


class EventsView(OpenAIView):
    def get(self, request: Request, job_id: str) -> Response:
        job = _job(request, job_id)
        return Response(_page(request, job.events.all(), "ftevent-", objects.event_object))


class CheckpointsView(OpenAIView):
    def get(self, request: Request, job_id: str) -> Response:
        found = objects.checkpoint_objects(_job(request, job_id))
        return Response(
            {
                "object": "list",
                "data": found,
                "has_more": False,
                "first_id": found[0]["id"] if found else None,
                "last_id": found[-1]["id"] if found else None,
            }
        )
