"""Wire formats: one module per protocol, each shared by the server's face and the client.

A wire module holds the request bodies (pydantic) and pure translations between the
protocol's JSON and the Runtime's vocabulary (``runtime/types.py``), in both
directions.  No HTTP here: the server's faces and ``client.py`` do that.
"""
