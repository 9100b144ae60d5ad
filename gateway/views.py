"""Import every view module so its routes attach to the blueprint."""

from . import (  # noqa: F401
    account_views,
    login_views,
    reset_views,
    setup_views,
    webauthn_views,
)
from .blueprint import blueprint

__all__ = ["blueprint"]
