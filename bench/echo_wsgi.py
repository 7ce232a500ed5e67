"""A WSGI app that reads the request body and answers a small JSON object: the HTTP floor of
bench/batch.py's invoke row (the same client and gunicorn settings, no Django, no model)."""


def app(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    body = b'{"label": "ants", "confidence": 0.71877, "labels": [{"label": "ants", "confidence": 0.71877}]}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
