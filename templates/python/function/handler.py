"""A Python function: OpenFaaS python3-http's shape.

event.body is the request body (bytes); event.headers, .method, .query and
.path describe the call. Return a dict (statusCode, body, headers), a str,
bytes or None. Add dependencies to requirements.txt.
"""


def handle(event, context):
    name = event.body.decode("utf-8", "replace").strip() or "world"
    return {
        "statusCode": 200,
        "body": f"Hello, {name}!\n",
        "headers": {"Content-Type": "text/plain; charset=utf-8"},
    }
