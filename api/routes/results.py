"""Results of a SUCCEEDED job: values (paged JSON, CSV, Parquet), corrupted rows, curves."""

from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from service import results
from service.db import new_session
from service.errors import InvalidPageToken, UnusedParameter

from ..deps import OwnerDep, PageSize, SessionDep, decode_token, encode_token
from ..schemas import CurvesPublic, ValuesPublic

router = APIRouter(prefix="/v1/jobs/{job_id}", tags=["results"])


@router.get("/values", response_model=ValuesPublic, operation_id="get_values",
            summary="One value per training row",
            responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}})
def get_values(job_id: str, request: Request, session: SessionDep, owner: OwnerDep,
               format: Literal["json", "csv", "parquet"] = "json",
               order: Literal["rank", "row"] = "rank", page_size: PageSize = 1000,
               page_token: str | None = None):
    """JSON pages ordered by rank (lowest value first) or input row order; ``format=csv`` or
    ``parquet`` downloads every row in input order (columns row, value, rank, label, flagged),
    and refuses ``order``, ``page_size`` and ``page_token`` (400 ``unused-parameter``)."""
    results.require_succeeded(session, job_id, owner)
    paging = [name for name in ("order", "page_size", "page_token")
              if name in request.query_params]
    if format != "json" and paging:  # they were ignored: a user sorting by rank got row order
        raise UnusedParameter(paging, f"applies to JSON pages; format={format} downloads every "
                              "row in input order (sort by its rank column)")
    if format == "csv":
        def stream():
            with new_session() as own:  # the request's session closes before streaming ends
                yield from results.csv_chunks(own, job_id)

        return StreamingResponse(stream(), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="values-{job_id}.csv"'})
    if format == "parquet":
        name = f"values-{job_id}.parquet"
        return Response(results.parquet_bytes(session, job_id),
                        media_type="application/vnd.apache.parquet",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    key = "rank" if order == "rank" else "position"
    items, last = results.values_page(session, job_id, key,
                                      _cursor(page_token, job_id, key), page_size)
    return _page(items, last, job_id, key)


def _cursor(token: str | None, job_id: str, key: str) -> int | None:
    """The row a values page starts after; a token of another job, order or list (``key``:
    ``rank``, ``position`` or ``corrupted``) is refused."""
    parts = decode_token(token, "values", 3)
    if parts is None:
        return None
    token_job, token_key, cursor = parts
    if token_job != job_id or token_key != key:
        raise InvalidPageToken("the page token belongs to another job's values or another "
                               "order")
    # a position or rank as issued: ASCII digits, within a 32-bit column (a forged one was
    # an overflow in the database, a 500)
    if not (cursor.isascii() and cursor.isdigit()) or int(cursor) >= 2**31:
        raise InvalidPageToken("the page token is malformed: pass next_page_token exactly as "
                               "it was returned")
    return int(cursor)


def _page(items: list[dict], last: int | None, job_id: str, key: str) -> Response:
    """The page as JSON, written directly: the rows come from the database typed already, and
    validating 10,000 of them again would cost more than the query."""
    token = None if last is None else encode_token("values", job_id, key, last)
    body = {"items": items, "next_page_token": token}
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


@router.get("/corrupted", response_model=ValuesPublic, operation_id="get_corrupted",
            summary="Flagged rows, lowest value first: the likely corrupted ones")
def get_corrupted(job_id: str, session: SessionDep, owner: OwnerDep,
                  page_size: PageSize = 1000, page_token: str | None = None) -> Response:
    results.require_succeeded(session, job_id, owner)
    # ranked like values?order=rank, but its own list: its tokens page nothing else
    items, last = results.values_page(session, job_id, "rank",
                                      _cursor(page_token, job_id, "corrupted"), page_size,
                                      flagged_only=True)
    return _page(items, last, job_id, "corrupted")


@router.get("/curves", response_model=CurvesPublic, operation_id="get_curves",
            summary="Removal curves, discovery curve and reward trace")
def get_curves(job_id: str, session: SessionDep, owner: OwnerDep) -> CurvesPublic:
    job = results.require_succeeded(session, job_id, owner)
    return CurvesPublic(**(job.curves or {"reward_trace": {}}))
