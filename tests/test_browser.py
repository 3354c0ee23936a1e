"""End to end in a real browser: Debian's chromium, through the provider's login page and back."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import LiveServer, sign_in_on_provider_page
from localidp import LocalProvider

pytestmark = pytest.mark.browser


def test_sign_in_see_the_protected_page_and_sign_out(live_app: LiveServer, idp: LocalProvider, page: Any) -> None:
    page.goto(live_app.url + "/profile?from=browser")
    sign_in_on_provider_page(page, idp, live_app.url + "/profile?from=browser")
    assert page.inner_text("#name") == "Grace"
    assert page.inner_text("#username") == "grace@example.test"

    page.goto(live_app.url + "/graph")
    assert page.title() == "Graph"
    assert int(page.inner_text("#token-length")) > 20

    page.click("#logout")
    page.wait_for_url(live_app.url + "/")
    assert page.is_visible("#anonymous")
    logout_calls = [e for e in idp.log() if e["path"].endswith("/oauth2/v2.0/logout")]
    assert logout_calls, "the browser never reached the provider's sign-out"

    page.goto(live_app.url + "/profile")
    page.wait_for_url(idp.origin + "/**")
    assert page.title() == "Sign-in"


def test_cancel_on_the_provider_page_shows_an_error_page(live_app: LiveServer, idp: LocalProvider, page: Any) -> None:
    page.goto(live_app.url + "/profile")
    page.wait_for_url(idp.origin + "/**")
    page.click("#cancel")
    page.wait_for_url(live_app.url + "/getAToken**")
    assert page.title() == "Sign-in was cancelled"
    assert page.is_visible("text=Sign in again")
