from django.contrib import admin

from scheduler.models import KueueQueue, Node, NodeSpec, ResourcePool


@admin.register(NodeSpec)
class NodeSpecAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "cpu_millis",
        "memory_mib",
        "device_type",
        "device_count",
        "device_model",
        "device_memory_gib",
        "cpu_processes",
        "enabled",
    ]
    list_filter = ["device_type", "device_model", "enabled"]
    search_fields = ["name"]
    list_editable = ["enabled"]


@admin.register(ResourcePool)
class ResourcePoolAdmin(admin.ModelAdmin):
    list_display = ["name", "dedicated", "taint"]
    list_filter = ["dedicated"]
    search_fields = ["name", "description"]
    filter_horizontal = ["projects"]


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "pool",
        "device_type",
        "device_count",
        "cpu_millis",
        "memory_mib",
        "driver_version",
        "device_model",
        "schedulable",
        "last_seen",
    ]
    list_filter = ["schedulable", "device_type", "device_model", "pool", "driver_version"]
    search_fields = ["name", "driver_version"]
    readonly_fields = ["last_seen"]


@admin.register(KueueQueue)
class KueueQueueAdmin(admin.ModelAdmin):
    """Read from the cluster by the node sync (Kueue admission): shown, never edited."""

    list_display = ["name", "local_queues", "synced_at"]
    search_fields = ["name"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
