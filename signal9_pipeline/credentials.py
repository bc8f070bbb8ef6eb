"""The Alpaca credentials, as the pipeline reads them from Secrets Manager and provisioning writes them.

The secret's value is one JSON object: `{"apiKey": ..., "secretKey": ..., "paper": true}`. Its shape is
declared here once, for the reader (`resources.alpaca_credentials.read_credentials`) and the writer (`local.provision`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SECRET_SHAPE = '{"apiKey", "secretKey", "paper"}'


@dataclass(frozen=True)
class AlpacaCredentials:
    api_key: str
    secret_key: str
    paper: bool = True

    def __repr__(self) -> str:  # never print the values
        return f"AlpacaCredentials(api_key=***, secret_key=***, paper={self.paper})"

    def secret_string(self) -> str:
        return json.dumps({"apiKey": self.api_key, "secretKey": self.secret_key, "paper": self.paper})

    @classmethod
    def from_secret_string(cls, text: str) -> AlpacaCredentials:
        """The credentials a secret's value holds; ValueError saying what is wrong with it (never its content)."""
        try:
            data = json.loads(text or "")
        except ValueError:
            raise ValueError(f"is not JSON; store {SECRET_SHAPE}") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and data.get(k)
                                                 for k in ("apiKey", "secretKey")):
            raise ValueError("lacks non-empty string fields apiKey and secretKey")
        return cls(data["apiKey"], data["secretKey"], bool(data.get("paper", True)))
