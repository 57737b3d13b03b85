"""The dev dashboard at ``/_fnserve/`` (issue 13 item 2): the route table, each function's state,
its instances, a live request log, latency per function, function output and dependency installs.

- ``feed``: ``DashboardFeed``, the events (requests, function output, fnserve messages) in bounded
  ring buffers and the open pages subscribed to them; the request path tests one attribute while no
  page is open;
- ``view``: the state document (``build_state``) from the project model and ``Supervisor.status()``;
- ``web``: ``DashboardApp``, the ASGI app (the page, its script, the state JSON, the SSE stream);
- ``assets/``: ``index.html`` and ``dashboard.js`` (package data: no build step, nothing fetched
  from elsewhere).

Nothing is imported here: ``observe`` imports ``feed`` on every request path module's import.
"""
