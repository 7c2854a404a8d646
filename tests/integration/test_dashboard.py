"""rq-dashboard: never open; with the right credentials it shows the export jobs, styled;
it cannot be framed and refuses every cross-site state change."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from posixpath import splitext
from urllib.parse import urlsplit

import pytest
from rq import Queue
from rq.job import Job, JobStatus

from api.dashboard import STATE_CHANGING_ENDPOINTS, create_dashboard
from shared.queue import control_queue, enqueue_plan, plan_job_id
from shared.settings import SettingsError


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


AUTH = basic("admin", "s3cret")
SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# What a linked asset must be served as, by suffix.
ASSET_TYPES = {
    ".css": {"text/css"},
    ".js": {"text/javascript", "application/javascript"},
    ".ico": {"image/vnd.microsoft.icon"},
}
# Every route of the dashboard that only reads.
READ_ONLY_ENDPOINTS = {
    "static",
    "rq_dashboard.static",
    "rq_dashboard.favicon",
    "rq_dashboard.queues_overview",
    "rq_dashboard.workers_overview",
    "rq_dashboard.jobs_overview",
    "rq_dashboard.job_view",
    "rq_dashboard.list_queues",
    "rq_dashboard.list_jobs",
    "rq_dashboard.job_info",
    "rq_dashboard.list_workers",
}
# Each state-changing route with each method it answers; {queue}, {queued}, {failed}: see Jobs.
STATE_CHANGES = [
    ("rq_dashboard.delete_job_view", "POST", "/job/{queued}/delete"),
    ("rq_dashboard.requeue_job_view", "POST", "/job/{failed}/requeue"),
    ("rq_dashboard.requeue_all", "GET", "/requeue/{queue}"),
    ("rq_dashboard.requeue_all", "HEAD", "/requeue/{queue}"),
    ("rq_dashboard.requeue_all", "POST", "/requeue/{queue}"),
    ("rq_dashboard.empty_queue", "POST", "/queue/{queue}/queued/empty"),
    ("rq_dashboard.empty_queue", "POST", "/queue/{queue}/failed/empty"),
    ("rq_dashboard.compact_queue", "POST", "/queue/{queue}/compact"),
]
CHANGE_IDS = [f"{method}-{path}" for _, method, path in STATE_CHANGES]
# The test client's own origin is http://localhost.
CROSS_SITE = {
    "fetch-site-cross-site": {"Sec-Fetch-Site": "cross-site"},
    "fetch-site-same-site": {"Sec-Fetch-Site": "same-site"},
    "fetch-site-wins-over-origin": {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
    "origin-only": {"Origin": "http://evil.example"},
    "origin-other-port": {"Origin": "http://localhost:8000"},
    "origin-null": {"Origin": "null"},
    "referer-only": {"Referer": "http://evil.example/page"},
}
SAME_ORIGIN = {
    "fetch-site-same-origin": {"Sec-Fetch-Site": "same-origin"},
    "fetch-site-none": {"Sec-Fetch-Site": "none"},
    "origin-only": {"Origin": "http://localhost"},
    "referer-only": {"Referer": "http://localhost/0/view/jobs"},
}


@pytest.fixture
def dashboard(settings, redis):
    """The dashboard on a queue set no worker serves, so enqueued jobs stay visible."""
    quiet = settings.replace(queue_prefix=f"spillway-dash-{uuid.uuid4().hex[:6]}", dashboard_password="s3cret")
    return quiet, create_dashboard(quiet).test_client()


@dataclass(frozen=True)
class Jobs:
    """The dashboard's control queue holding a queued job, a failed job and a stale id."""

    queue: Queue
    queued: str
    failed: str
    stale: str  # an id whose job is gone: what compact removes

    def path(self, template: str) -> str:
        return template.format(queue=self.queue.name, queued=self.queued, failed=self.failed)

    def snapshot(self) -> tuple[bool, list[str], list[str]]:
        """Everything the state-changing routes change."""
        return (
            Job.exists(self.queued, connection=self.queue.connection),
            self.queue.get_job_ids(),
            self.queue.failed_job_registry.get_job_ids(),
        )


@pytest.fixture
def jobs(dashboard, redis) -> Jobs:
    """A queued job, a failed one and a stale id on the dashboard's control queue."""
    settings, _ = dashboard
    queued, failed = uuid.uuid4(), uuid.uuid4()
    enqueue_plan(redis, settings, queued)
    enqueue_plan(redis, settings, failed)
    queue = control_queue(redis, settings)
    job = Job.fetch(plan_job_id(failed), connection=redis)
    queue.remove(job)
    job.set_status(JobStatus.FAILED)
    queue.failed_job_registry.add(job, exc_string="boom")
    redis.rpush(queue.key, "export-gone-plan")
    state = Jobs(queue, plan_job_id(queued), plan_job_id(failed), "export-gone-plan")
    assert state.snapshot() == (True, [state.queued, state.stale], [state.failed])
    return state


class AssetLinks(HTMLParser):
    """The stylesheets, icons and scripts a page links."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        url = dict(attrs).get({"link": "href", "script": "src"}.get(tag, ""))
        if url:
            self.urls.append(url)


def test_dashboard_refuses_to_start_without_a_password(settings):
    with pytest.raises(SettingsError, match="DASHBOARD_PASSWORD"):
        create_dashboard(settings.replace(dashboard_password=""))


@pytest.mark.parametrize(
    "headers", [{}, basic("admin", "wrong"), basic("root", "s3cret"), {"Authorization": "Bearer x"}]
)
def test_no_or_wrong_credentials_get_401(dashboard, headers):
    _, client = dashboard
    for path in ("/", "/0/data/queues.json", "/0/view/workers", "/static/css/main.css"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_right_credentials_show_the_export_jobs(dashboard, redis):
    settings, client = dashboard
    export_id = uuid.uuid4()
    enqueue_plan(redis, settings, export_id)
    assert client.get("/", headers=AUTH).status_code == 200
    queues = {q["name"]: q for q in client.get("/0/data/queues.json", headers=AUTH).get_json()["queues"]}
    assert queues[settings.queue_control]["count"] == 1
    jobs = client.get(f"/0/data/jobs/{settings.queue_control}/queued/10/asc/1.json", headers=AUTH).get_json()["jobs"]
    assert [j["id"] for j in jobs] == [f"export-{export_id}-plan"]
    assert str(export_id) in jobs[0]["description"]
    page = client.get(f"/0/view/job/export-{export_id}-plan", headers=AUTH)
    assert page.status_code == 200 and str(export_id).encode() in page.data


@pytest.mark.parametrize("page", ["/", "/0/view/workers", "/0/view/jobs"])
def test_pages_link_css_and_js_that_are_served(dashboard, page):
    _, client = dashboard
    links = AssetLinks()
    links.feed(client.get(page, headers=AUTH).get_data(as_text=True))
    suffixes = [splitext(urlsplit(url).path)[1] for url in links.urls]
    assert suffixes.count(".css") >= 2 and suffixes.count(".js") >= 4
    for url, suffix in zip(links.urls, suffixes, strict=True):
        response = client.get(url, headers=AUTH)
        assert response.status_code == 200, url
        assert response.mimetype in ASSET_TYPES[suffix], url
        assert response.data, url


def test_the_state_changing_list_covers_every_route_and_method(dashboard):
    _, client = dashboard
    rules = list(client.application.url_map.iter_rules())
    assert {rule.endpoint for rule in rules} == READ_ONLY_ENDPOINTS | STATE_CHANGING_ENDPOINTS
    for rule in rules:
        methods = (rule.methods or set()) - {"OPTIONS"}
        if rule.endpoint in READ_ONLY_ENDPOINTS:
            assert methods == {"GET", "HEAD"}, rule
        else:
            assert methods == {method for endpoint, method, _ in STATE_CHANGES if endpoint == rule.endpoint}, rule
    assert {endpoint for endpoint, _, _ in STATE_CHANGES} == STATE_CHANGING_ENDPOINTS


@pytest.mark.parametrize("headers", CROSS_SITE.values(), ids=CROSS_SITE.keys())
@pytest.mark.parametrize(("endpoint", "method", "path"), STATE_CHANGES, ids=CHANGE_IDS)
def test_cross_site_state_changes_are_refused_and_change_nothing(dashboard, jobs, endpoint, method, path, headers):
    _, client = dashboard
    before = jobs.snapshot()
    response = client.open(jobs.path(path), method=method, headers={**AUTH, **headers}, data={"confirm": "1"})
    assert response.status_code == 403
    assert jobs.snapshot() == before


@pytest.mark.parametrize("headers", SAME_ORIGIN.values(), ids=SAME_ORIGIN.keys())
@pytest.mark.parametrize(("endpoint", "method", "path"), STATE_CHANGES, ids=CHANGE_IDS)
def test_same_origin_state_changes_are_served(dashboard, jobs, endpoint, method, path, headers):
    _, client = dashboard
    before = jobs.snapshot()
    response = client.open(jobs.path(path), method=method, headers={**AUTH, **headers})
    assert response.status_code == 200
    assert method == "HEAD" or response.get_json()["status"] == "OK"
    assert jobs.snapshot() != before


@pytest.mark.parametrize(
    ("endpoint", "method", "path"),
    [change for change in STATE_CHANGES if change[1] == "POST"],
    ids=[i for i, change in zip(CHANGE_IDS, STATE_CHANGES, strict=True) if change[1] == "POST"],
)
def test_posts_without_browser_headers_are_served(dashboard, jobs, endpoint, method, path):
    _, client = dashboard
    before = jobs.snapshot()
    response = client.post(jobs.path(path), headers=AUTH)
    assert response.status_code == 200 and response.get_json()["status"] == "OK"
    assert jobs.snapshot() != before


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_state_changing_gets_without_browser_headers_are_refused(dashboard, jobs, method):
    _, client = dashboard
    before = jobs.snapshot()
    response = client.open(jobs.path("/requeue/{queue}"), method=method, headers=AUTH)
    assert response.status_code == 403
    assert jobs.snapshot() == before


@pytest.mark.parametrize(
    ("method", "path", "same_origin_status"),
    [("POST", "/0/data/queues.json", 405), ("PUT", "/", 405), ("DELETE", "/0/view/workers", 405), ("PATCH", "/x", 404)],
)
def test_any_unsafe_method_is_refused_cross_site(dashboard, method, path, same_origin_status):
    _, client = dashboard
    cross_site = client.open(path, method=method, headers={**AUTH, "Origin": "http://evil.example"})
    assert cross_site.status_code == 403
    same_origin = client.open(path, method=method, headers={**AUTH, "Sec-Fetch-Site": "same-origin"})
    assert same_origin.status_code == same_origin_status


@pytest.mark.parametrize("path", ["/", "/0/view/workers", "/0/data/queues.json", "/static/css/main.css"])
@pytest.mark.parametrize("headers", CROSS_SITE.values(), ids=CROSS_SITE.keys())
def test_read_only_routes_stay_allowed_cross_site(dashboard, path, headers):
    _, client = dashboard
    assert client.get(path, headers={**AUTH, **headers}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/", {}, 401),
        ("GET", "/", AUTH, 200),
        ("GET", "/0/data/queues.json", AUTH, 200),
        ("GET", "/static/js/jquery-3.5.1.min.js", AUTH, 200),
        ("POST", "/requeue/q", {**AUTH, "Sec-Fetch-Site": "same-origin"}, 200),
        ("POST", "/queue/q/compact", {**AUTH, "Sec-Fetch-Site": "cross-site"}, 403),
        ("GET", "/no/such/page", AUTH, 404),
        ("GET", "/0/view/job/no-such-job", AUTH, 404),  # rq-dashboard itself would answer 500
        ("POST", "/queue/empty-queue/compact", {**AUTH, "Sec-Fetch-Site": "same-origin"}, 409),
    ],
)
def test_every_answer_carries_the_security_headers(dashboard, method, path, headers, status):
    _, client = dashboard
    response = client.open(path, method=method, headers=headers)
    assert response.status_code == status
    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
