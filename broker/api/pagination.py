from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """`{"count", "next", "previous", "results"}` with `?page=` and `?pageSize=` (at most 1000)."""

    page_size = 100
    page_size_query_param = "pageSize"
    max_page_size = 1000
