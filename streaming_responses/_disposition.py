"""Content-Disposition values (RFC 6266 with RFC 8187 encoding), as a pure function.

Shared by every response that names a download (FileResponse, CSVResponse). The rule that keeps
it safe: the value is built from scratch, so no character of a filename can end the header,
open a new one, or close the quoted string early.
"""

from __future__ import annotations

from urllib.parse import quote

#: RFC 8187 §3.2.1 attr-char: what may appear unescaped in ``filename*``.
_ATTR_SAFE = "!#$&+-.^_`|~"
_DISPOSITION_TYPES = frozenset({"attachment", "inline"})


def content_disposition(filename: str, disposition_type: str = "attachment") -> str:
    """The ``Content-Disposition`` value offering ``filename`` to the client.

    An ASCII ``filename="..."`` is always present (old clients read only that); when the name
    is not plain printable ASCII, ``filename*=UTF-8''...`` carries the real name (RFC 6266 §4.3).
    Control characters (CR, LF, NUL, ...) never reach the header; quotes and backslashes in
    the fallback are escaped as quoted-pairs (RFC 9110 §5.6.4).

    >>> content_disposition("report.csv")
    'attachment; filename="report.csv"'
    >>> content_disposition("caf\\udce9.txt")  # from os.listdir() for a Latin-1 name
    'attachment; filename="caf_.txt"; filename*=UTF-8\\'\\'caf%EF%BF%BD.txt'
    >>> content_disposition("naïve \\"plan\\".txt", "inline")
    'inline; filename="na_ve \\\\"plan\\\\".txt"; filename*=UTF-8\\'\\'na%C3%AFve%20%22plan%22.txt'
    """
    if not isinstance(filename, str):
        raise TypeError(f"filename must be a str, not {type(filename).__name__}")
    if disposition_type not in _DISPOSITION_TYPES:
        raise ValueError(f"disposition_type must be 'attachment' or 'inline', not {disposition_type!r}")
    # Control characters have no business in a file name and could split the header. A lone
    # surrogate (what os.listdir() returns for a name that is not UTF-8) has no UTF-8 form:
    # it becomes U+FFFD, the replacement character, rather than an encoding error.
    cleaned = "".join(
        " " if ord(char) < 0x20 or ord(char) == 0x7F else "\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char
        for char in filename
    )
    if not cleaned.strip():
        raise ValueError(f"filename {filename!r} has no printable characters")
    fallback = "".join(char if 0x20 <= ord(char) < 0x7F else "_" for char in cleaned)
    quoted = fallback.replace("\\", "\\\\").replace('"', '\\"')
    value = f'{disposition_type}; filename="{quoted}"'
    if fallback != cleaned or cleaned != filename:
        value += f"; filename*=UTF-8''{quote(cleaned, safe=_ATTR_SAFE)}"
    return value
