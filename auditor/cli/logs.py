"""What reaches stderr from the libraries under the commands: log levels and progress bars."""

from __future__ import annotations

import logging


def configure_logging(debug: bool) -> None:
    """Warnings and errors on stderr, or everything with --debug."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        # huggingface_hub logs each retry of a failed request as a warning (utils/_http.py,
        # `_http_backoff_base`); what finally failed is said once, by the command's own error.
        logging.getLogger("huggingface_hub.utils._http").setLevel(logging.ERROR)


def quiet_model_libraries() -> None:
    """Our progress display replaces the download and weight-loading bars of the model libraries."""
    import huggingface_hub.utils
    import transformers

    huggingface_hub.utils.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def log_schedule() -> None:
    """Cycle and scheduler news on stderr with timestamps, unless --debug already shows everything."""
    logger = logging.getLogger("auditor.schedule")
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
