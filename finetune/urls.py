from django.urls import path

from finetune import views

app_name = "finetune"
urlpatterns = [
    path("jobs/", views.JobListView.as_view(), name="job_list"),
]
