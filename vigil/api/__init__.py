"""Vigil's HTTP API (``vigil serve``): a versioned JSON API under ``/api/v1`` on FastAPI.

FastAPI (on Starlette, served by uvicorn) because the API is documented by the OpenAPI schema
it publishes from the same typed models the routes return, uploads and streaming responses
come with it, and it is the best-kept ASGI framework of its kind. Like the CLI, the routes are
thin: each calls a typed function of a domain package and returns what it returns.

    app.py     the application: routes, the error shape, upload limits
    faces.py   the face models the routes share, one request at a time
    gate.py    the key and the body size, checked before any upload is read
    keys.py    API keys (read-only and admin), stored hashed in Redis
    audit.py   who changed what, when: an audit stream in Redis
"""
