"""rq-dashboard: never open; with the right credentials it shows the export jobs."""

from __future__ import annotations

import base64
import uuid

import pytest

from api.dashboard import create_dashboard
from shared.queue import enqueue_plan
from shared.settings import SettingsError


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def dashboard(settings, redis):
    """The dashboard on a queue set no worker serves, so enqueued jobs stay visible."""
    quiet = settings.replace(queue_prefix=f"spillway-dash-{uuid.uuid4().hex[:6]}", dashboard_password="s3cret")
    return quiet, create_dashboard(quiet).test_client()


def test_dashboard_refuses_to_start_without_a_password(settings):
    with pytest.raises(SettingsError, match="DASHBOARD_PASSWORD"):
        create_dashboard(settings.replace(dashboard_password=""))


@pytest.mark.parametrize(
    "headers", [{}, basic("admin", "wrong"), basic("root", "s3cret"), {"Authorization": "Bearer x"}]
)
def test_no_or_wrong_credentials_get_401(dashboard, headers):
    _, client = dashboard
    for path in ("/", "/0/data/queues.json", "/0/view/workers"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_right_credentials_show_the_export_jobs(dashboard, redis):
    settings, client = dashboard
    export_id = uuid.uuid4()
    enqueue_plan(redis, settings, export_id)
    auth = basic("admin", "s3cret")
    assert client.get("/", headers=auth).status_code == 200
    queues = {q["name"]: q for q in client.get("/0/data/queues.json", headers=auth).get_json()["queues"]}
    assert queues[settings.queue_control]["count"] == 1
    jobs = client.get(f"/0/data/jobs/{settings.queue_control}/queued/10/asc/1.json", headers=auth).get_json()["jobs"]
    assert [j["id"] for j in jobs] == [f"export-{export_id}-plan"]
    assert str(export_id) in jobs[0]["description"]
    page = client.get(f"/0/view/job/export-{export_id}-plan", headers=auth)
    assert page.status_code == 200 and str(export_id).encode() in page.data
