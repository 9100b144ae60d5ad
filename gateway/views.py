"""Import every view module so its routes attach to the blueprint."""

from . import account_views, login_views, reset_views, setup_views  # noqa: F401
from .blueprint import blueprint

__all__ = ["blueprint"]
