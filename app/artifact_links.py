"""`GET /artifacts/<task>/<name>?expires=…&sig=…`: a task's artifact kept in the data directory,
for whoever holds a link the runner signed (runner/artifacts.py).

Only with artifacts in the data directory; with Supabase Storage the links are Storage's own and
this route answers 404. A wrong or expired signature is refused (403) before anything is read;
the name is one of a fixed few and the task id 32 hex digits, so no request names another file.
Artifacts are served as text or JSON, as attachments, never as something a browser renders.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, abort, current_app, request

from runner.artifacts import CONTENT_TYPES, TASK_ID, ArtifactError, LocalArtifacts, link_is_valid

blueprint = Blueprint("artifact_links", __name__)


@blueprint.get("/artifacts/<task_id>/<name>")
def artifact(task_id: str, name: str) -> Response:
    settings, store = current_app.config["SETTINGS"], current_app.config["STORE"]
    if settings.on_supabase_storage or not TASK_ID.fullmatch(task_id) or name not in CONTENT_TYPES:
        abort(404)
    key = store.artifact_key()
    if not link_is_valid(key, task_id, name, request.args.get("expires", ""),
                         request.args.get("sig", ""), now=time.time()):
        abort(403)
    try:
        content = LocalArtifacts(settings.artifacts_path, key=key, base_url="").get(task_id, name)
    except ArtifactError:
        abort(404)
    return Response(content, headers={
        "Content-Type": CONTENT_TYPES[name],
        "Content-Disposition": f'attachment; filename="{task_id[:8]}-{name}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, no-store",
        "Referrer-Policy": "no-referrer",
    })
