"""Requests of one browser that overlap must not undo each other's sign-in state."""

from __future__ import annotations

import threading
import time

import requests
from conftest import LiveServer
from localidp import LocalProvider, query_of


def test_a_slow_page_finishing_after_login_keeps_the_pending_sign_in(live_app: LiveServer, idp: LocalProvider) -> None:
    browser = requests.Session()
    assert idp.sign_in_to_app(browser, live_app.url + "/login?next=/profile").headers["Location"] == "/profile"

    # A slow page starts with the session as it is now, then a sign-in for more scopes
    # stores its pending flow while the slow page is still running.
    slow = threading.Thread(target=browser.get, args=(live_app.url + "/slow?seconds=0.8",))
    slow.start()
    time.sleep(0.3)  # a real race: the slow page has read the session by now
    consent = idp.auth_uri_from(browser, live_app.url + "/login?next=/files&scopes=Files.Read")
    slow.join()

    callback = idp.sign_in(consent)
    assert query_of(callback)["state"]
    done = idp.back_to_app(browser, callback)
    assert done.status_code == 302, done.text
    assert done.headers["Location"] == "/files"
    assert "Files.Read" in browser.get(live_app.url + "/files").json()["scopes"]
