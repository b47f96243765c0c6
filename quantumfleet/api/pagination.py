"""Paging that keeps list bodies as plain JSON arrays, as the seed's clients expect."""

from __future__ import annotations

from typing import Any

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response


class LinkHeaderPagination(LimitOffsetPagination):
    """``?limit=&offset=`` paging with the page links in headers, not in the body.

    The body stays the array the seed returned, so existing clients keep parsing it; new
    clients follow ``Link: <...>; rel="next"`` and read the total from ``X-Total-Count``.
    """

    max_limit = 1000

    def get_paginated_response(self, data: Any) -> Response:
        return Response(data, headers=self.page_headers())

    def page_bounds(self, request: Request) -> tuple[int, int]:
        """(limit, offset) asked for, for views that fetch the page themselves."""
        self.request = request
        self.limit = self.get_limit(request)
        self.offset = self.get_offset(request)
        return int(self.limit or self.default_limit or 0), self.offset

    def headers_for_count(self, count: int) -> dict[str, str]:
        """Paging headers once such a view knows how many items there are in all."""
        self.count = count
        return self.page_headers()

    def page_headers(self) -> dict[str, str]:
        """The paging headers of the current page, for views that render their own body."""
        links = []
        next_url = self.get_next_link()
        previous_url = self.get_previous_link()
        if next_url:
            links.append(f'<{next_url}>; rel="next"')
        if previous_url:
            links.append(f'<{previous_url}>; rel="prev"')

        headers = {"X-Total-Count": str(self.count)}
        if links:
            headers["Link"] = ", ".join(links)
        return headers

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return schema
