"""Project-level views: the health check, and the response every document download is sent in."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers, 503 otherwise; load balancers poll this."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure to reach the database means unhealthy
        return JsonResponse({"status": "unavailable", "database": str(exc)}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


_DOCUMENT_TYPES = {".csv": "text/csv", ".pdf": "application/pdf"}


def document_response(body: bytes | str, *, filename: str, inline: bool = False) -> HttpResponse:
    """A generated document (PDF, CSV) as a download named `filename`, or shown in the browser
    (`inline`); the content type follows the file's extension."""
    response = HttpResponse(body, content_type=_DOCUMENT_TYPES[filename[filename.rindex(".") :]])
    response["Content-Disposition"] = f'{"inline" if inline else "attachment"}; filename="{filename}"'
    return response
