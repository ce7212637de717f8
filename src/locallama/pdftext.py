"""The text of a PDF, page by page, through pypdf: one reader for ``ask --docs``
(everyday/docs.py) and the chat page's attachments (server/web.py)."""

from __future__ import annotations

import io
import logging

from locallama.quiet import quiet_logger


class PdfError(Exception):
    """A PDF that cannot be read (broken, encrypted); the message says why."""


def pdf_pages(data: bytes) -> list[str]:
    """Each page's extracted text ("" for a page without text), in order.

    Raises PdfError for an encrypted or unreadable file: a stranger's file, and
    pypdf raises many exception types on broken ones."""
    import pypdf

    try:
        with quiet_logger("pypdf", logging.CRITICAL):
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise PdfError("the PDF is encrypted")
            return [page.extract_text() or "" for page in reader.pages]
    except PdfError:
        raise
    except Exception as exc:
        raise PdfError(f"not a readable PDF ({exc or type(exc).__name__})") from None
