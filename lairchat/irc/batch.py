# -*- test-case-name: tests.test_irc_batch -*-
"""
IRCv3 batches and labeled responses: lines grouped for one viewer.

A server-initiated batch (IRCv3 C{batch}) is C{BATCH +<ref> <type>
[params...]}, the lines it holds each tagged C{batch=<ref>}, then
C{BATCH -<ref>}; the reference is the connection's to choose (letters,
digits and hyphens) and unique among its open batches.  A batch may hold
another: the inner C{BATCH} lines carry the outer reference.

A labeled response (IRCv3 C{labeled-response}) returns a request's
C{label} tag on its reply: on the one line of a one-line reply, on the
opening line of a C{labeled-response} batch around a longer one, and on
an C{ACK} when there is no reply.  A client without C{batch} reads the
label on the first line only (as the specification allows).

Nothing here does I/O: these are functions of lines
(L{lairchat.irc.message.Message}) to lines.
"""

from collections.abc import Callable, Iterable

from attrs import evolve

from lairchat.irc.message import Message, message


def tagged(line: Message, **tags: str) -> Message:
    """A line with more tags (those given win over the line's own)."""
    return evolve(line, tags={**line.tags, **tags})


def batch(ref: str, kind: str, params: Iterable[str], lines: Iterable[Message], server_name: str) -> list[Message]:
    """
    C{lines} as one batch of type C{kind}: its opening line (with
    C{params}), every line tagged C{batch=<ref>}, its closing line.  A
    line of a batch nested in this one keeps its own batch's tag.
    """
    return [message("BATCH", "+" + ref, kind, *params, source=server_name),
            *(line if "batch" in line.tags else tagged(line, batch=ref) for line in lines),
            message("BATCH", "-" + ref, source=server_name)]


def batch_for(caps: Iterable[str], new_ref: Callable[[], str], kind: str, params: Iterable[str],
              lines: Iterable[Message], server_name: str) -> list[Message]:
    """
    C{lines} as a batch for a client with C{caps}: batched when it enabled
    C{batch} (with a reference from C{new_ref}), as they are otherwise.
    """
    if "batch" not in caps:
        return list(lines)
    return batch(new_ref(), kind, params, lines, server_name)


def labeled(label: str, lines: list[Message], caps: Iterable[str], new_ref: Callable[[], str],
            server_name: str) -> list[Message]:
    """
    A request's reply with its C{label}: an C{ACK} for no line, the label
    on a single line, a C{labeled-response} batch (label on its opening
    line) for more, or, without C{batch}, the label on the first line.
    """
    if not lines:
        return [message("ACK", source=server_name, tags={"label": label})]
    if len(lines) == 1 or "batch" not in caps:
        return [tagged(lines[0], label=label), *lines[1:]]
    opening, *rest = batch(new_ref(), "labeled-response", (), lines, server_name)
    return [tagged(opening, label=label), *rest]


__all__ = ["batch", "batch_for", "labeled", "tagged"]
