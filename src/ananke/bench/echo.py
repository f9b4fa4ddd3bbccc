"""A bare ASGI app for the service suite's floor: a loopback POST that reads its body and sends it
back, with nothing else (no routing, validation or middleware). Run as
`python -m uvicorn ananke.bench.echo:app`."""

from __future__ import annotations


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
