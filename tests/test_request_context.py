"""Every response carries a request id: the caller's when it is a short token, else a new one."""
import pytest

from config.request_context import REQUEST_ID_HEADER

pytestmark = pytest.mark.django_db


def test_response_echoes_a_well_formed_request_id(client):
    response = client.get("/api/schema/", headers={REQUEST_ID_HEADER: "trace-42.a_b"})
    assert response[REQUEST_ID_HEADER] == "trace-42.a_b"


@pytest.mark.parametrize("offered", ["", "has space", "x" * 65, "<script>"])
def test_malformed_request_id_is_replaced_by_a_new_one(client, offered):
    response = client.get("/api/schema/", headers={REQUEST_ID_HEADER: offered})
    assert response[REQUEST_ID_HEADER] != offered
    assert len(response[REQUEST_ID_HEADER]) == 32


def test_each_request_without_an_id_gets_its_own(client):
    first = client.get("/api/schema/")[REQUEST_ID_HEADER]
    second = client.get("/api/schema/")[REQUEST_ID_HEADER]
    assert first != second
