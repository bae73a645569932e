"""ASGI entry point for uvicorn workers: `uvicorn app.asgi:app`."""

from app.logconfig import configure_logging
from app.main import create_app
from app.settings import get_settings

configure_logging(get_settings().log_level, get_settings().log_format)
app = create_app()
