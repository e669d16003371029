"""Many writers, one commit: append sessions of every torchrun rank published as one version.

Each rank appends to its own session (its own segment files). At the end every rank
``prepare()``s its session (the segments are published, referenced by no version yet), the
tokens are gathered on every rank, rank 0 commits all of them with
``store.commit_prepared(tokens)`` (all or nothing: one version), the outcome is broadcast and
every rank returns the version — or, if any rank failed before preparing or the commit was
refused, every rank aborts its own segments and raises.

Only ``torch.distributed`` collectives on Python objects are used (``all_gather_object``,
``broadcast_object_list``, ``barrier``), so any backend works (gloo on CPU).
"""

from __future__ import annotations

from typing import Any

from .errors import GradSketchError, InvalidStateError

__all__ = ["is_distributed", "rank", "world_size", "commit_across_ranks"]


def _dist() -> Any:
    try:
        import torch.distributed as dist
    except ImportError:  # torch without distributed support
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def is_distributed() -> bool:
    """True when ``torch.distributed`` is initialized with more than one rank."""
    dist = _dist()
    return dist is not None and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without ``torch.distributed``)."""
    dist = _dist()
    return dist.get_rank() if dist is not None else 0


def world_size() -> int:
    """The number of ranks (1 without ``torch.distributed``)."""
    dist = _dist()
    return dist.get_world_size() if dist is not None else 1


def _release(session: Any) -> None:
    close = getattr(session, "close", None)
    if close is not None:
        close()


def commit_across_ranks(store: Any, session: Any, *, success: bool = True, reason: str | None = None,
                        detail: str | None = None) -> int:
    """Commits every rank's ``session`` as one version; every rank must call it.

    Args:
        store: this rank's open store (the same store path on every rank).
        session: this rank's append session.
        success: ``False`` when this rank failed: nothing is committed on any rank.
        reason: why this rank failed, for the other ranks' errors.
        detail: the version's detail text.

    Returns:
        The committed version (the same on every rank).

    Raises:
        InvalidStateError: a rank failed before preparing; every rank aborted its segments.
        GradSketchError: the commit was refused (the engine's error on rank 0; the other
            ranks raise an error of the same class carrying its message); every rank
            aborted its segments.
    """
    dist = _dist()
    if dist is None:
        raise InvalidStateError("commit_across_ranks needs an initialized torch.distributed process group")
    token: str | None = None
    failure: str | None = None if success else f"failed while collecting ({reason or 'no reason given'})"
    if success:
        try:
            token = session.prepare()
        except Exception as error:  # noqa: BLE001 - reported to every rank below
            failure = f"prepare failed: {error}"
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (token, failure))
    failed = [(index, reason) for index, (_, reason) in enumerate(gathered) if reason is not None]
    outcome: list[Any] = [None]
    if dist.get_rank() == 0:
        if failed:
            outcome[0] = ("failed", "InvalidStateError", "; ".join(f"rank {i}: {r}" for i, r in failed))
        else:
            try:
                version, _ = store.commit_prepared([t for t, _ in gathered], detail=detail)
                outcome[0] = ("committed", version, None)
            except GradSketchError as error:
                outcome[0] = ("failed", type(error).__name__, str(error))
            except Exception as error:  # noqa: BLE001 - every rank must learn the outcome
                outcome[0] = ("failed", "InternalError", f"{type(error).__name__}: {error}")
    dist.broadcast_object_list(outcome, src=0)
    state, value, message = outcome[0]
    if state != "committed":
        try:
            session.abort()              # also removes a prepared session's files
        except Exception as error:  # noqa: BLE001 - the commit's failure is the error to raise
            message = f"{message} (aborting this rank's segments also failed: {error})"
        dist.barrier()
        _release(session)
        from . import errors
        error_class = getattr(errors, str(value), errors.InternalError)
        raise error_class(f"the distributed commit of {dist.get_world_size()} ranks failed: {message}")
    dist.barrier()
    _release(session)
    return int(value)
