"""A Quart app whose routes do no work: what the framework itself costs per request."""

from __future__ import annotations

from quart import Quart, request

app = Quart(__name__)


@app.get("/api")
async def status() -> dict[str, str]:
    return {"message": "ok", "id": request.args.get("id", "")}


@app.post("/api")
@app.post("/api/jobs")
async def submit() -> tuple[dict[str, str], int]:
    await request.get_data()
    return {"message": "ok"}, 202
