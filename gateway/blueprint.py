"""The /agent blueprint; the view modules attach their routes to it."""

from flask import Blueprint

blueprint = Blueprint(
    "agent",
    __name__,
    url_prefix="/agent",
    static_folder="static",
    static_url_path="/static",
)
