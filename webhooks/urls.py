"""Mounted at projects/<int:project_id>/webhooks/ (config/urls.py)."""

from django.urls import path

from webhooks import views

app_name = "webhooks"
urlpatterns = [
    path("", views.WebhookListView.as_view(), name="webhook_list"),
    path("new/", views.WebhookFormView.as_view(), name="webhook_create"),
    path("<int:pk>/", views.WebhookDetailView.as_view(), name="webhook_detail"),
    path("<int:pk>/edit/", views.WebhookFormView.as_view(), name="webhook_edit"),
    path("<int:pk>/rotate/", views.WebhookRotateView.as_view(), name="webhook_rotate"),
    path("<int:pk>/delete/", views.WebhookDeleteView.as_view(), name="webhook_delete"),
    path("<int:pk>/test/", views.WebhookTestView.as_view(), name="webhook_test"),
    path(
        "<int:pk>/deliveries/<int:delivery>/resend/",
        views.DeliveryResendView.as_view(),
        name="delivery_resend",
    ),
]
