"""What an item's name may be, and where an item's outputs and success record go.

The rules every side shares: the publisher checks names with them before publishing, the
worker before reading or writing, the stores before touching a path.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

from jobkit_worker.errors import InputError

RECORD_SUFFIX = ".done.json"
KIT_DIR = ".jobkit"  # the kit's own files in a store: hidden, never listed as items or outputs


MAX_NAME_BYTES = 1024  # Azure's limit for a blob's name, and far more than a file system's path
MAX_PART_BYTES = 255  # a file name's limit on Linux file systems
_SHOWN_CHARACTERS = 80
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode's category Cc, in one search


def check_name(name: str, kind: str = "Item name") -> str:
    """Return `name` if it is a safe relative item name; raises InputError otherwise, calling
    it `kind`: one that no store could keep (too long, a directory's, an odd path) can never
    succeed."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # a file name's bytes that are not UTF-8, escaped by Python
        raw = name.encode("utf-8", errors="surrogateescape")
        raise InputError(
            f"{kind} {raw!r} is not UTF-8, which a message body must be; rename the file "
            "(e.g. with 'convmv -f latin1 -t utf8')."
        ) from None
    if size > MAX_NAME_BYTES:
        raise InputError(
            f"{kind} {brief(name, _SHOWN_CHARACTERS)!r} is {size:,} bytes long, more than "
            f"{MAX_NAME_BYTES:,}."
        )
    if not name or name.strip() != name:
        raise InputError(f"{kind} {name!r} is empty or has surrounding white space.")
    if _CONTROL.search(name):
        raise InputError(f"{kind} {name!r} contains control characters.")
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts):
        raise InputError(
            f"{kind} {name!r} must be a relative path of file names, without '..', '.', "
            "empty parts or a trailing '/'."
        )
    for part in parts:
        if len(part.encode("utf-8")) > MAX_PART_BYTES:
            raise InputError(
                f"{kind} {brief(name, _SHOWN_CHARACTERS)!r} has a part longer than "
                f"{MAX_PART_BYTES} bytes, which no file system keeps."
            )
    return name


# Shown escaped: format characters (right-to-left overrides, zero widths), line and paragraph
# separators, and the combining marks of a name not in NFC, which would print as another.
_UNSEEN = {"Cf", "Zl", "Zp", "Cc", "Cs"}  # Cs: bytes of a file name not UTF-8


def shown(name: str) -> str:
    """`name` as printed for people: characters that would hide or reorder what is printed,
    or make it look like another name, escaped as \\uXXXX."""
    decomposed = unicodedata.is_normalized("NFC", name) is False
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in _UNSEEN or (decomposed and unicodedata.combining(char))
        else char
        for char in name
    )


def brief(text: str, limit: int = MAX_NAME_BYTES) -> str:
    """`text` for a message or a log line, cut after `limit` characters: a message body may be
    megabytes, and no name is longer than the default."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def record_name(item: str) -> str:
    """`temperature1.csv` -> `temperature1.csv.done.json`, stored with the outputs."""
    return item + RECORD_SUFFIX


def is_hidden(name: str) -> bool:
    """True for names with a part starting with '.': the kit's own files, and others' (.git)."""
    return any(part.startswith(".") for part in PurePosixPath(name).parts)


def check_output_name(item: str, name: str) -> str:
    """Return `name` if a task may write it for `item`; raises InputError otherwise.

    An output may not be hidden (the kit keeps its records of what was published and who owns
    which output there) nor be named like a success record.
    """
    check_name(name, f"{item}: the task's output name")
    if is_hidden(name) or name.endswith(RECORD_SUFFIX):
        raise InputError(
            f"{item}: the task's output {name!r} is hidden or named like a success record "
            f"(*{RECORD_SUFFIX}), which only the kit writes; name it otherwise."
        )
    return name


def beside_item(item: str, relative: str) -> str:
    """Where a program's output `relative` of `item` goes: in the item's own directory, as the
    built-in's results do (`a/x.csv` and `r.txt` give `a/r.txt`)."""
    return str(PurePosixPath(item).parent / relative)


def owner_name(output: str) -> str:
    """Where the store keeps the name of the item that owns `output`."""
    return f"{KIT_DIR}/owners/{output}"
