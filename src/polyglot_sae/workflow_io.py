"""What every Snakemake script shares: logging into the rule's log, threads, config dataclasses."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def rule_log(smk) -> Iterator[logging.Logger]:
    """Send stdout, stderr (progress bars included) and logging to the rule's log file."""
    log_path = smk.log[0] if smk.log else None
    handle = open(log_path, "a", buffering=1) if log_path else sys.stderr
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = handle
    logging.basicConfig(stream=handle, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(message)s")
    # Only a job whose script already imported torch uses it: importing it here would cost the
    # other jobs (tables, figures, summary) a second or two and a few hundred MB each.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(max(1, int(getattr(smk, "threads", 1))))
    try:
        yield logging.getLogger(smk.rule)
    except Exception as exc:
        traceback.print_exc(file=handle)
        from polyglot_sae.hub.offline import offline_error

        hub = offline_error(smk.rule, exc)  # a job reaching for the hub, which it must not
        if hub is not None:
            print(hub, file=handle)
            raise hub from exc
        raise
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        if handle is not sys.stderr:
            handle.close()


def from_mapping(cls: type[T], values: Mapping[str, Any], **overrides: Any) -> T:
    """A config dataclass from a config mapping (unknown keys were already refused by the schema)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in values.items() if k in names}
    kwargs.update(overrides)
    return cls(**kwargs)
