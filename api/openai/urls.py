"""/v1/: OpenAI's fine-tuning API (api/openai/views.py)."""

from django.urls import path

from api.openai import views

app_name = "openai"
urlpatterns = [
    path("files", views.FilesView.as_view(), name="files"),
    path("files/<str:file_id>", views.FileView.as_view(), name="file"),
    path("fine_tuning/jobs", views.JobsView.as_view(), name="jobs"),
    path("fine_tuning/jobs/<str:job_id>", views.JobView.as_view(), name="job"),
    path("fine_tuning/jobs/<str:job_id>/cancel", views.CancelView.as_view(), name="cancel"),
    path("fine_tuning/jobs/<str:job_id>/events", views.EventsView.as_view(), name="events"),
    path(
        "fine_tuning/jobs/<str:job_id>/checkpoints",
        views.CheckpointsView.as_view(),
        name="checkpoints",
    ),
]
