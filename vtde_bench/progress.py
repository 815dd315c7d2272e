"""How long-running library code reports progress without printing.

The library takes a `Progress` and calls `progress.bar(description, total)`;
the CLI passes one that draws rich progress bars, the API's default draws nothing.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Protocol


class Bar(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def skip(self, n: int) -> None:
        """Count `n` as done without work (read from the cache): not in the rate."""


class Progress(Protocol):
    def bar(self, description: str, total: int | None) -> contextlib.AbstractContextManager[Bar]: ...

    def note(self, message: str) -> None:
        """A one-line remark for the user (a skipped result, a cache hit, a warning)."""


class _NullBar:
    def advance(self, n: int = 1) -> None:
        pass

    def skip(self, n: int) -> None:
        pass


class NullProgress:
    """Reports nothing; the default for library calls."""

    @contextlib.contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[Bar]:
        yield _NullBar()

    def note(self, message: str) -> None:
        pass
