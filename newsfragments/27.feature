The bouncer service's HTTP face is a small site: after logging in at
``/login`` a browser lands on ``/``, which says who it is logged in as and
when its session ends (ISO 8601 and "in 59 minutes"), with a *Log out*
button; ``/whoami`` is a page for a browser and stays JSON for curl and
programs; other addresses and methods get the project's own 404 and 405
pages, and the guard's refusals (401, 403, 413, 429, 503) are small pages
for a browser, one line of text for anything else.  Every page has one
inline stylesheet and no script.  A logout now sends the browser to
``/login?loggedout=1``.
