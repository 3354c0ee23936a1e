"""gunicorn's settings for the sample, read from this folder by ``gunicorn app:app``.

The to-do page calls the app's own web API over HTTP while it serves the page.
With one request at a time per worker (gunicorn's default), pages waiting on
that call can hold every worker, and their calls then wait until they time
out. Threads let a worker answer the call while a page waits for it. Options
given on the command line win over these.
"""

threads = 4
