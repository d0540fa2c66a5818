from rest_framework.pagination import PageNumberPagination

from finetune.views.base import PAGE_SIZES


class Page(PageNumberPagination):
    """The pages' paging: ``?page=`` and ``?per_page=`` (at most the largest page size)."""

    page_size = 20
    page_size_query_param = "per_page"
    max_page_size = max(PAGE_SIZES)
