"""What a run may be asked for: the params its DAG declares, and nothing else.

Airflow 3.3 accepts, at trigger time, a conf key that no param declares: the REST API (and the
UI's trigger form, which posts to it) merges the conf into the DAG's params, and an unknown key
becomes a param without a schema, which always validates
(``airflow.serialization.definitions.param.SerializedParamsDict.deep_merge``); no DAG-level hook
runs at run creation. So a typo such as ``table`` for ``tables`` reached the tasks as an extra
param while ``tables`` kept its default. The first task of every DAG with params therefore
refuses such a key with this one check (``hms_dr.tasks.params.run_params``), before it reads
anything else.
"""

from __future__ import annotations

from collections.abc import Iterable

from hms_dr.errors import RequestRefused

MAX_KEY_CHARS = 64  # a pasted document as a key must not become the whole message


def refuse_unknown_params(given: Iterable[object], declared: Iterable[str], *, dag_id: str) -> None:
    """RequestRefused, in one line, naming every key of ``given`` that ``declared`` lacks (with the
    nearest declared name, when one is close) and every declared name."""
    names = sorted(declared)
    unknown = sorted({str(key) for key in given} - set(names))
    if not unknown:
        return
    import difflib  # only on a refusal: every DAG file imports this module when it is parsed

    shown = []
    for key in unknown:
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        text = ascii(
            key if len(key) <= MAX_KEY_CHARS else key[:MAX_KEY_CHARS] + "..."
        )  # ascii(): one line, look-alikes escaped
        shown.append(text + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise RequestRefused(
        f"{dag_id} has no param {', '.join(shown)}: refused before anything was done; "
        f"its params are {', '.join(names) if names else 'none'}"
    )
