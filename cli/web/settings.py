"""What a `stepledger ui` server was started with."""

from __future__ import annotations

from dataclasses import dataclass, field

from .resumer import Resumer
from .security import Access


@dataclass
class WebSettings:
    """What the server was started with."""

    db: str | None
    workdir: str
    access: Access
    ledger: str  # the log's URL as pages show it: its password masked
    bind: str = "127.0.0.1:8765"
    resumer: Resumer = field(default_factory=lambda: Resumer(None, "."))
