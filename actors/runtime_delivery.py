"""One message to one pooled actor, with pykka's failure semantics
(:mod:`actors.runtime`, "Failure semantics"): an ``ask``'s exception goes to
its future, a ``tell``'s stops the actor and runs ``on_failure``, messages to
a stopped actor are answered with ``ActorDeadError``; and the tombstone that
answers them once the actor is gone."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from pykka import ActorDeadError, messages

from actors.runtime_mailbox import Mailbox, _START

if TYPE_CHECKING:
    from actors.runtime_pool import DispatcherPool

# Log records keep the runtime's logger name, wherever the code sits.
logger = logging.getLogger("actors.runtime")


class _Tombstone:
    """Stands in a stopped actor's mailbox for it: enough to answer late
    messages with ActorDeadError.

    It keeps the ref's text, not the ref: the ref holds the mailbox, so a
    tombstone holding the ref made mailbox -> tombstone -> ref -> mailbox a
    reference cycle per stopped actor, which only the cyclic collector could
    free. Under call load (~7 entity actors per call) those cycles filled the
    young generations, and a collection walking them held every thread for
    ~0.6 s, the heartbeat loss time of the pair (ops/node_gc.py GcPauses)."""

    __slots__ = ("actor_stopped", "actor_ref", "_name")

    def __init__(self, actor: Any) -> None:
        self.actor_stopped = actor.actor_stopped
        self.actor_ref = str(actor.actor_ref)
        self._name = str(actor)

    def __str__(self) -> str:
        return self._name


def _deliver(actor: Any, envelope: Any, pool: "DispatcherPool", mailbox: Mailbox) -> None:
    """One message, with the semantics of pykka's `Actor._actor_loop_running`.

    An actor that stopped while handling the message is retired (out of the
    pool's live set, its stop watchers run) before the caller's future is
    answered: whoever waited on ``stop()`` (``stop_all``, a test counting
    live actors, a watcher's bookkeeping) sees it gone. Answering first let
    the waiter run while the dispatcher had yet to retire the actor, which
    on a busy machine it did many milliseconds later."""
    reply_to = envelope.reply_to
    try:
        response = actor._handle_receive(envelope.message)
    except Exception:
        if reply_to is not None:
            logger.info(
                "Exception returned from %s to caller of %r", actor, envelope.message,
                exc_info=True,
            )
            exc_info = sys.exc_info()
            if actor.actor_stopped.is_set():
                pool._retire(mailbox)
            reply_to.set_exception(exc_info)
        else:
            exc_info = sys.exc_info()
            logger.error(
                "Unhandled exception in %s handling %r; the actor stops",
                actor, envelope.message, exc_info=exc_info,
            )
            _fail(actor, exc_info)
    except BaseException:  # noqa: BLE001
        # pykka stops every actor here; on a shared pool one actor's
        # SystemExit/KeyboardInterrupt stops that actor only.
        exc_info = sys.exc_info()
        logger.error("%r in %s handling %r; the actor stops", exc_info[1], actor,
                     envelope.message)
        actor._stop()
        pool._retire(mailbox)
        if reply_to is not None:
            reply_to.set_exception(exc_info)
    else:
        if actor.actor_stopped.is_set():
            pool._retire(mailbox)
        if reply_to is not None:
            reply_to.set(response)


def _fail(actor: Any, exc_info: Any) -> None:
    actor.actor_stopped.set()
    try:
        actor.on_failure(*exc_info)
    except Exception:
        logger.exception("on_failure of %s raised", actor)


def _dead_letter(actor: Any, envelope: Any) -> None:
    """A message the actor will never handle, as pykka's teardown answers it."""
    if envelope is _START:
        return
    reply_to = envelope.reply_to
    if reply_to is None:
        logger.debug("%s is stopped; dropped %r", actor, envelope.message)
    elif isinstance(envelope.message, messages._ActorStop):  # noqa: SLF001
        reply_to.set(None)
    else:
        reply_to.set_exception(
            exc_info=(
                ActorDeadError,
                ActorDeadError(f"{actor.actor_ref} stopped before handling the message"),
                None,
            )
        )
