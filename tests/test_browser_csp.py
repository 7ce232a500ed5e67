"""The Content-Security-Policy holds in a real Chromium: Swagger UI (vendored) still renders, and the
htmx pages run without a violation (the browser_page fixture fails any test that logs one)."""

import pytest

from projects.tests.factories import PASSWORD, UserFactory


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_it_renders_swagger_ui_under_the_csp(live_server, browser_page):
    page = browser_page
    response = page.goto(f"{live_server.url}/api/v1/docs")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    page.wait_for_selector(".swagger-ui .information-container .title", timeout=20_000)
    assert "Pictor API" in page.inner_text(".swagger-ui .information-container .title")
    page.wait_for_selector(".opblock-tag-section")
    assert page.csp_violations == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_it_blocks_an_injected_inline_script(live_server, browser_page):
    page = browser_page
    UserFactory(username="ada")
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#empty-state")
    page.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.pwned = 1';
                             document.body.appendChild(s); }""")
    page.wait_for_timeout(200)
    assert page.evaluate("() => window.pwned") is None
    assert any("inline script" in v for v in page.csp_violations)
    page.csp_violations.clear()  # the one violation this test provoked on purpose
