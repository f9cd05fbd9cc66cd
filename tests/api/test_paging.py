"""Page tokens: a token this service did not issue for that list, for that owner, is a 400
problem (``invalid-page-token``), never the first page again."""

from __future__ import annotations

import pytest

from tests.conftest import upload

INVALID = "/problems/invalid-page-token"


def _refused(response) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == INVALID


@pytest.mark.parametrize("token", ["!!!", "%%%", "bm90LWEtdG9rZW4", "YQ", "x" * 300])
def test_a_malformed_token_is_refused_on_every_list(client, tables, token):
    for path in ("/v1/datasets", "/v1/jobs"):
        _refused(client.get(path, params={"page_token": token}))


def test_an_empty_token_says_to_leave_it_out(client, tables):
    for path in ("/v1/datasets", "/v1/jobs"):
        response = client.get(path, params={"page_token": ""})
        _refused(response)
        assert "leave page_token out" in response.json()["detail"]


def test_a_stale_token_is_refused_not_answered_with_the_first_page(client, tables):
    train, _ = tables
    ids = [upload(client, train.head(20), f"t{i}.csv") for i in range(3)]
    first = client.get("/v1/datasets", params={"page_size": 1}).json()
    token = first["next_page_token"]
    assert first["items"][0]["id"] == ids[-1]
    second = client.get("/v1/datasets", params={"page_size": 1, "page_token": token}).json()
    assert second["items"][0]["id"] == ids[-2]
    assert client.delete(f"/v1/datasets/{ids[-1]}").status_code == 204  # the anchor is gone
    _refused(client.get("/v1/datasets", params={"page_size": 1, "page_token": token}))


def test_another_owners_token_and_another_lists_token_are_refused(client, other_client, tables):
    train, valid = tables
    for _ in range(2):
        upload(client, train.head(20))
    token = client.get("/v1/datasets", params={"page_size": 1}).json()["next_page_token"]
    _refused(other_client.get("/v1/datasets", params={"page_token": token}))
    _refused(client.get("/v1/jobs", params={"page_token": token}))  # a datasets token


def test_a_values_token_of_another_job_or_order_is_refused(client, tables):
    from service.runner import run_job

    train, valid = tables
    spec = {"dataset_id": upload(client, train), "target": "label",
            "validation": {"dataset_id": upload(client, valid)}, "dvrl": {"iterations": 3}}
    first, second = (client.post("/v1/jobs", json=spec | {"seed": s}).json()["id"]
                     for s in (0, 1))
    assert run_job(first) == "SUCCEEDED" and run_job(second) == "SUCCEEDED"
    page = client.get(f"/v1/jobs/{first}/values", params={"page_size": 10}).json()
    token = page["next_page_token"]
    following = client.get(f"/v1/jobs/{first}/values",
                           params={"page_size": 10, "page_token": token}).json()
    assert [r["rank"] for r in following["items"]] == list(range(11, 21))
    _refused(client.get(f"/v1/jobs/{second}/values", params={"page_token": token}))
    _refused(client.get(f"/v1/jobs/{first}/values", params={"page_token": token,
                                                           "order": "row"}))
    _refused(client.get(f"/v1/jobs/{first}/values", params={"page_token": "!!!"}))
    # the flagged rows are a list of their own: its tokens and the values' page nothing else
    flagged = client.get(f"/v1/jobs/{first}/corrupted", params={"page_size": 2}).json()
    more = client.get(f"/v1/jobs/{first}/corrupted",
                      params={"page_size": 2, "page_token": flagged["next_page_token"]}).json()
    assert [r["rank"] for r in flagged["items"] + more["items"]] == [1, 2, 3, 4]
    _refused(client.get(f"/v1/jobs/{first}/corrupted", params={"page_token": token}))
    _refused(client.get(f"/v1/jobs/{first}/values",
                        params={"page_token": flagged["next_page_token"]}))
    # forged cursors: past any row (an overflow in the database was a 500), negative, or
    # digits of another script
    from api.deps import encode_token

    for kind, where in (("values", "values"), ("values", "corrupted")):
        for cursor in ("9223372036854775808", "99999999999999999999", "-5", "", "\u0663"):
            key = "rank" if where == "values" else "corrupted"
            forged = encode_token(kind, first, key, cursor)
            _refused(client.get(f"/v1/jobs/{first}/{where}", params={"page_token": forged}))


def test_a_parameter_given_twice_is_refused_not_cut_to_its_last_value(client, tables):
    """?state=QUEUED&state=RUNNING listed the running jobs only, as if asked for them."""
    for path, params in (("/v1/jobs", [("state", "QUEUED"), ("state", "RUNNING")]),
                         ("/v1/datasets", [("page_size", "1"), ("page_size", "2"),
                                           ("sha256", "0" * 64), ("sha256", "1" * 64)])):
        response = client.get(path, params=params)
        assert response.status_code == 400 and \
            response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["type"] == "/problems/repeated-parameter"
        names = sorted({name for name, _ in params})
        assert [e["field"] for e in body["errors"]] == names
        assert body["detail"] == ("each query parameter takes one value: "
                                  f"{', '.join(names)} given more than once")
    assert client.get("/v1/jobs", params={"state": "QUEUED"}).status_code == 200
