"""The oracle file (oracle/oracle.json, schema gemmaios.oracle/1): per-prompt tokens and top-k logits, written
and read back strictly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..buildlayout import ORACLE_FILE  # noqa: F401  (re-exported: oracle.ORACLE_FILE)
from ..errors import GemmaiosError
from ..files import write_json_atomic

ORACLE_SCHEMA = "gemmaios.oracle/1"
DEFAULT_TOP_K = 5
DEFAULT_TOKENS = 32


class OracleError(GemmaiosError):
    """The oracle cannot be produced, or an oracle.json is missing, malformed or incompatible."""


@dataclass
class TopK:
    ids: list[int]
    logits: list[float]

    @property
    def margin(self) -> float:
        """Top-1 minus top-2 logit (inf when only one candidate was recorded)."""
        return self.logits[0] - self.logits[1] if len(self.logits) > 1 else float("inf")

    def rank(self, token: int) -> int | None:
        """0-based rank of `token` among the recorded candidates, None when outside the top-k."""
        return self.ids.index(token) if token in self.ids else None

    def gap(self, token: int) -> float | None:
        """How far `token`'s logit lies below the top-1 logit (None when outside the top-k)."""
        r = self.rank(token)
        return None if r is None else self.logits[0] - self.logits[r]


@dataclass
class OraclePrompt:
    id: str
    text: str
    prompt_ids: list[int]
    generated_ids: list[int]
    top_k: list[TopK]
    first_eos: int | None = None

    @property
    def margins(self) -> list[float]:
        return [s.margin for s in self.top_k]


@dataclass
class Oracle:
    model: dict[str, Any]
    tokenizer_sha256: str
    chat_template: bool
    prompt_set: dict[str, Any]
    max_new_tokens: int
    top_k: int
    eos_token_ids: list[int]
    prompts: list[OraclePrompt]
    stop_at_eos: bool = False
    dtype: str = "float32"
    device: str = "cpu"
    tools: dict[str, str] = field(default_factory=dict)
    schema: str = ORACLE_SCHEMA

    @property
    def min_margin(self) -> float:
        return min((m for p in self.prompts for m in p.margins), default=float("inf"))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["decode"] = {"method": "greedy", "max_new_tokens": data.pop("max_new_tokens"),
                          "stop_at_eos": data.pop("stop_at_eos"), "top_k": data.pop("top_k")}
        return data

    def save(self, path: Path) -> Path:
        write_json_atomic(Path(path), self.to_json())
        return Path(path)


def load_oracle(path: Path) -> Oracle:
    """Read and check an oracle.json written by `run_oracle`."""
    path = Path(path)
    if not path.is_file():
        raise OracleError(f"no oracle at {path}", hint="run `gemmaios oracle` (or `gemmaios build`) first")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OracleError(f"{path} is not valid JSON ({exc})", hint="delete it and run `gemmaios oracle --force`") from exc
    if not isinstance(data, dict) or data.get("schema") != ORACLE_SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise OracleError(f"{path} has schema {found!r}, expected {ORACLE_SCHEMA!r}",
                          hint="re-run `gemmaios oracle --force` with this gemmaios")
    try:
        decode = data.pop("decode")
        prompts = [
            OraclePrompt(**{**p, "top_k": [TopK(**s) for s in p["top_k"]]}) for p in data.pop("prompts")
        ]
        oracle = Oracle(**data, prompts=prompts, max_new_tokens=decode["max_new_tokens"],
                        stop_at_eos=decode["stop_at_eos"], top_k=decode["top_k"])
    except (KeyError, TypeError) as exc:
        raise OracleError(f"{path} is incomplete or malformed ({exc!r})",
                          hint="delete it and run `gemmaios oracle --force`") from exc
    for p in oracle.prompts:
        if len(p.top_k) != len(p.generated_ids):
            raise OracleError(f"{path}: prompt {p.id!r} has {len(p.generated_ids)} tokens but {len(p.top_k)} top-k steps",
                              hint="delete it and run `gemmaios oracle --force`")
    return oracle
