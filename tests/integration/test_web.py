"""The web page's files as the API serves them: headers, no inline script, no missing module.

The page's behaviour is tested in a real browser (tests/browser/test_web_page.py); these are
the fast checks of what every answer of ``/`` and ``/ui/`` must carry.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from api.web import UI_DIR

PAGE_FILES = sorted(p.name for p in UI_DIR.iterdir() if p.is_file())


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.script_text.append(data)


def test_the_page_is_served_at_the_root_without_a_key(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b"<title>Spillway exports</title>" in response.data


@pytest.mark.parametrize("path", ["/", *(f"/ui/{name}" for name in PAGE_FILES)])
def test_every_page_answer_carries_the_security_headers(client, path):
    response = client.get(path)
    assert response.status_code == 200
    csp = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert csp["style-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_has_no_inline_script_or_style_and_its_modules_exist(client):
    """What the CSP would block, the page must not need: inline scripts, handlers, style attributes."""
    parser = _Tags()
    parser.feed(client.get("/").get_data(as_text=True))
    assert parser.script_text == []
    for tag, attrs in parser.tags:
        assert not [a for a in attrs if a.startswith("on")], f"inline handler on <{tag}>"
        assert "style" not in attrs, f"style attribute on <{tag}>"
        if tag == "script":
            assert attrs.get("src", "").startswith("/ui/") and attrs.get("type") == "module"
    for name in PAGE_FILES:
        if not name.endswith(".js"):
            continue
        source = (UI_DIR / name).read_text()
        assert "eval(" not in source and "innerHTML" not in source, name  # text goes in as text
        for imported in re.findall(r'from "\./([^"]+)"', source):
            assert client.get(f"/ui/{imported}").status_code == 200, f"{name} imports a missing {imported}"


def test_the_key_is_sent_in_a_header_only(client):
    """The key reaches the API in the Authorization header, from sessionStorage, never in a URL."""
    source = (UI_DIR / "api.js").read_text()
    assert "sessionStorage" in source and "localStorage" not in source
    assert "Authorization = `Bearer ${key}`" in source
    assert not re.search(r"[?&](api_)?key=", "".join((UI_DIR / n).read_text() for n in PAGE_FILES if n.endswith(".js")))


@pytest.mark.parametrize("path", ["/ui/../web.py", "/ui/%2e%2e/web.py", "/ui/missing.js"])
def test_nothing_outside_the_page_files_is_served(client, path):
    assert client.get(path).status_code == 404


def test_the_api_answers_stay_json(client):
    """The page's blueprint changes no API answer: an unknown route is still a JSON 404."""
    response = client.get("/no-such-route")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
