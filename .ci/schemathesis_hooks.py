"""Serializers for the request media types of devext's document that schemathesis has none
for: a device import's JSON Lines (application/x-ndjson) and CSV (text/csv) bodies, documented
as strings. A string is sent as its UTF-8 text; anything else (schema-violating data of the
negative mode) as its JSON text, so that it reaches the service as a body it must refuse."""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson", "text/csv")
def text_body(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value).encode("utf-8")
