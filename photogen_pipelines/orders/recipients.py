"""Who receives the print, and how it travels: personal data, kept in the orders database only.

A recipient is validated when the order is placed, stored in its own table (never in
Dagster metadata, logs or the event log), shown masked once the order exists, sent only
to the shop's print provider, and deleted by the retention policy with the order's files.
"""

from __future__ import annotations

import enum
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

# ISO 3166-1 alpha-2; providers check the country against what they ship to
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# what a person types, not a full RFC 5322 parser: one @, a dot in the domain, no spaces
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
# digits with the usual separators and an optional leading +, 6 to 20 digits in all
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{4,24}$")
# Control characters (C0, DEL, C1: NUL, line breaks, escapes) and lone surrogates. No id and
# no text a person types holds one; PostgreSQL cannot store a NUL (a 500 instead of a 422),
# a line break forges log lines, and a surrogate cannot even be encoded. The one rule for
# every id and free text from outside: the API's request bodies, URLs and callbacks too.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def control_character(text: str) -> str | None:
    """Where `text` has a control character, e.g. "U+0000 at position 3"; None if it has none."""
    found = _CONTROL.search(text)
    return f"U+{ord(found.group()):04X} at position {found.start()}" if found else None


def refuse_control_characters(value: object) -> object:
    """A pydantic validator: the value (a string, or strings in a list or a dict) unchanged,
    or a `control_character` error."""
    if isinstance(value, dict):
        texts = [*value.keys(), *value.values()]
    else:
        texts = value if isinstance(value, list | tuple) else [value]
    for text in texts:
        if isinstance(text, str) and (where := control_character(text)):
            raise PydanticCustomError("control_character", "must not contain control characters ({where})", {"where": where})
    return value


class ShippingMethod(enum.StrEnum):
    """Our names for the speeds every provider offers; each adapter maps them to its own."""

    BUDGET = "budget"
    STANDARD = "standard"
    EXPRESS = "express"
    OVERNIGHT = "overnight"


class Address(BaseModel):
    model_config = ConfigDict(strict=True, str_strip_whitespace=True, extra="forbid")

    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    state: str | None = Field(None, max_length=100, description="state, county or province (a code where the country uses one)")
    postal_code: str = Field(min_length=1, max_length=20)
    country_code: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2, e.g. US, GB, DE")

    _plain = field_validator("*")(refuse_control_characters)

    @field_validator("country_code", mode="before")
    @classmethod
    def _country(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().upper()
            if not _COUNTRY.match(value):
                raise ValueError("a two-letter ISO 3166-1 country code, e.g. US or GB")
        return value


class Recipient(BaseModel):
    model_config = ConfigDict(strict=True, str_strip_whitespace=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(None, max_length=254)
    phone: str | None = Field(None, max_length=30)
    address: Address

    _plain = field_validator("*")(refuse_control_characters)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("an email address such as name@example.com")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and not (_PHONE.match(value) and 6 <= sum(c.isdigit() for c in value) <= 20):
            raise ValueError("a phone number of 6 to 20 digits, e.g. +44 20 7946 0000")
        return value

    def masked(self) -> MaskedRecipient:
        """What the API shows once the order exists: enough to recognise, not to reuse."""
        return MaskedRecipient(
            name=" ".join(_mask_word(word) for word in self.name.split()),
            email=_mask_email(self.email) if self.email else None,
            phone=("•••" + "".join(c for c in self.phone if c.isdigit())[-2:]) if self.phone else None,
            city=self.address.city,
            postal_code=_mask_tail(self.address.postal_code, keep=2),
            country_code=self.address.country_code,
        )


class MaskedRecipient(BaseModel):
    name: str
    email: str | None
    phone: str | None
    city: str
    postal_code: str
    country_code: str


def _mask_word(word: str) -> str:
    return word[0] + "•" * min(len(word) - 1, 4) if word else word


def _mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[0]}•••@{domain}"


def _mask_tail(text: str, keep: int) -> str:
    return text[:keep] + "•" * max(len(text) - keep, 0)
