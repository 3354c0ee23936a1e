"""Requests of one browser that overlap must not undo each other's sign-in state."""

from __future__ import annotations

import threading
import time

import requests
from conftest import LiveServer
from localidp import LocalProvider, query_of


def test_a_slow_page_finishing_after_login_keeps_the_pending_sign_in(live_app: LiveServer, idp: LocalProvider) -> None:
    browser = requests.Session()
    first = idp.sign_in(browser.get(live_app.url + "/login?next=/profile", allow_redirects=False).headers["Location"])
    assert browser.get(first, allow_redirects=False).status_code == 302  # signed in

    # A slow page starts with the session as it is now, then a sign-in for more scopes
    # stores its pending flow while the slow page is still running.
    slow = threading.Thread(target=browser.get, args=(live_app.url + "/slow?seconds=0.8",))
    slow.start()
    time.sleep(0.3)  # the slow page has read the session by now
    consent = browser.get(live_app.url + "/login?next=/files&scopes=Files.Read", allow_redirects=False)
    slow.join()

    callback = idp.sign_in(consent.headers["Location"])
    assert query_of(callback)["state"]
    done = browser.get(callback, allow_redirects=False)
    assert done.status_code == 302, done.text
    assert done.headers["Location"] == "/files"
    assert "Files.Read" in browser.get(live_app.url + "/files").json()["scopes"]
