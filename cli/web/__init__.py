"""`stepledger ui`: the web view, a front end beside the command line on the same application API.

Imported only by the `ui` command: the web stack (Starlette, uvicorn, Jinja2) costs the other
commands nothing.
"""
