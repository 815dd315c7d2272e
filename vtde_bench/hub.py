"""Whether the Hugging Face Hub can be reached, found out in seconds.

Without network, and without `HF_HUB_OFFLINE=1`, huggingface_hub retries for 25-50 s before it fails.
`check_reachable` asks the endpoint (`HF_ENDPOINT`, by default https://huggingface.co) once per
process, with a short timeout that bounds the name lookup too, and says plainly when it does not answer.
Light on purpose: it imports no part of huggingface_hub.
"""

from __future__ import annotations

import functools
import os
import threading
import urllib.error
import urllib.request

from vtde_bench.errors import UserError

TIMEOUT_S = 3.0
_TRUE = {"1", "true", "yes", "on"}


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def offline() -> bool:
    """`HF_HUB_OFFLINE` is set: huggingface_hub answers from its cache alone, at once."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


@functools.cache
def unreachable(url: str | None = None, timeout: float = TIMEOUT_S) -> str | None:
    """Why the hub at `url` (default `endpoint()`) cannot be reached, or None when it answers (any HTTP status)."""
    url = url or endpoint()
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url + "/", method="HEAD"), timeout=timeout).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # it answered
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            outcome.append(str(reason) or type(reason).__name__)

    thread = threading.Thread(target=probe, daemon=True)  # a thread: a name lookup ignores the socket timeout
    thread.start()
    thread.join(timeout + 1.0)
    return outcome[0] if outcome else f"no answer within {timeout:.0f} s"


def check_reachable(what: str, fix: str) -> None:
    """Raise at once, not after a minute of retries, when the hub cannot be reached (unless `HF_HUB_OFFLINE`).

    Raises:
        UserError: names `what` needed the hub, why it failed, and `fix`.
    """
    if offline():
        return
    reason = unreachable(endpoint())
    if reason is not None:
        raise UserError(f"{what} needs the Hugging Face Hub, which cannot be reached at {endpoint()} ({reason}); {fix}")
