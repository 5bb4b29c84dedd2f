"""Relation names: the SQL spelling people write, and the ``schema.name`` key hms-dr records.

People name a table the way SQL does, in the policy (``data_only_tables``, ``baseline_views``)
and in the DR form: ``appointments``, ``public."Order Details"``, ``"MixedCase"``,
``other_schema.t``. ``parse_relation_name`` reads that spelling exactly as PostgreSQL does
(unquoted words fold to lower case, quoted ones keep every character) and the catalog then
resolves it to its own (schema, name) pair.

Baselines, manifests and reports key a table by ``relation_key``: ``schema.name``, both parts
as the catalog spells them, unquoted (``public.Order Details``). Keys already stored in
manifests are plain like this, and the restored database is queried with the same key text
(``n.nspname || '.' || c.relname``), so the format stays. A key is split at its FIRST dot
(``split_relation_key``): a table's name may hold dots, quotes and spaces, and the split is still
exact, because a schema whose name holds a dot is refused before anything is recorded
(``check_schema_name``). Never split a key anywhere else, and never build SQL from a key's text:
split it, then quote each part (``sql.Identifier``, ``quote_ident``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# PostgreSQL truncates a longer identifier to NAMEDATALEN - 1 bytes; refusing it is clearer.
MAX_IDENTIFIER_BYTES = 63
# Unquoted, plain ASCII only (PostgreSQL takes other letters too): a look-alike letter from
# another alphabet (Cyrillic a in appointments) is refused, not silently a different name.
_UNQUOTED = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SPELLING_RULE = 'a table name as SQL writes it: name, schema.name, "Mixed Case" or schema."Name With Spaces"'


@dataclass(frozen=True)
class RelationName:
    """A relation as written: the schema is None when the spelling names none (search_path applies)."""

    schema: str | None
    name: str

    def regclass_text(self) -> str:
        """Text for to_regclass(): every part quoted, so it means exactly these names."""
        parts = ([self.schema] if self.schema is not None else []) + [self.name]
        return ".".join(quote_identifier(part) for part in parts)


def parse_relation_name(text: str) -> RelationName:
    """``[schema.]name`` in SQL spelling; ValueError with a one-line reason when it is not one."""
    parts: list[str] = []
    position = 0
    while True:
        part, position = _identifier_at(text, position)
        parts.append(part)
        if position == len(text):
            break
        if text[position] != ".":
            raise ValueError(
                f"{text!a} is not {SPELLING_RULE}: unexpected {text[position]!a} at character {position + 1}"
            )
        position += 1
    if len(parts) > 2:
        raise ValueError(
            f"{text!a} has {len(parts)} dot-separated parts; {SPELLING_RULE} (quote a name that holds a dot)"
        )
    return RelationName(parts[0], parts[1]) if len(parts) == 2 else RelationName(None, parts[0])


def _identifier_at(text: str, start: int) -> tuple[str, int]:
    """One identifier starting at ``start``: (its name, the position after it)."""
    if start < len(text) and text[start] == '"':
        end = start + 1
        chars: list[str] = []
        while True:
            close = text.find('"', end)
            if close < 0:
                raise ValueError(f"{text!a} is not {SPELLING_RULE}: a quote is not closed")
            chars.append(text[end:close])
            if not text.startswith('"', close + 1):
                break
            chars.append('"')  # "" inside quotes is one quote
            end = close + 2
        name, position = "".join(chars), close + 1
        if not name:
            raise ValueError(f"{text!a} is not {SPELLING_RULE}: an empty quoted name")
    else:
        match = _UNQUOTED.match(text, start)
        if match is None:
            raise ValueError(f"{text!a} is not {SPELLING_RULE}")
        name, position = match.group(0).lower(), match.end()  # as PostgreSQL folds an unquoted name
    if _CONTROL.search(name):
        raise ValueError(f"{text!a} holds a control character")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"{text!a}: {name!a} is longer than {MAX_IDENTIFIER_BYTES} bytes, which PostgreSQL would cut short"
        )
    return name, position


def capitals_outside_quotes(text: str) -> bool:
    """Whether the spelling has a capital letter PostgreSQL folds to lower case (outside quotes)."""
    return bool(re.search(r"[A-Z]", re.sub(r'"(?:[^"]|"")*"', "", text)))


def quote_identifier(name: str) -> str:
    """Always quoted: exact whatever the name holds (a keyword, capitals, a space, a quote)."""
    return '"' + name.replace('"', '""') + '"'


def spell_identifier(name: str) -> str:
    """How a person would write a name: a plain word unquoted, any other name quoted."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else quote_identifier(name)


def sql_spelling(schema: str, name: str) -> str:
    """How a person would write the relation, e.g. public."Order Details"."""
    return f"{spell_identifier(schema)}.{spell_identifier(name)}"


def relation_key(schema: str, name: str) -> str:
    """The key of a relation in baselines and manifests (see the module docstring)."""
    return f"{schema}.{name}"


def split_relation_key(key: str) -> tuple[str, str]:
    """(schema, name) of a ``relation_key``: the schema ends at the first dot."""
    schema, dot, name = key.partition(".")
    if not dot:
        raise ValueError(f"{key!a} is not a schema.name key")
    return schema, name


def check_schema_name(schema: str) -> str | None:
    """Why a schema cannot be recorded (its name holds a dot, so a key would not split back), or None."""
    if "." in schema:
        return (
            f"schema {quote_identifier(schema)} has a dot in its name, which hms-dr's schema.name keys cannot "
            "tell apart from the table's: rename the schema, or leave it out with logical_backup.schemas"
        )
    return None
