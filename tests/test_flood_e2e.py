"""
Flood control end to end, over real TCP from several loopback source
addresses: pasted lines are answered later rather than refused, address
budgets survive reconnecting, a flood past the backlog is cut off, and
registrations per address are refused with a truthful retry time.

Rates are small (set through the L{lairchat.context.Config}) so the real
delays are short; nothing asserts on how long anything took, only on order,
outcome, and what the server counted.
"""

import re

from twisted.trial.unittest import TestCase

from lairchat.addresses import Networks
from lairchat.ratelimit import Rate
from tests.support import LineClient, start_server

PASSWORD = "correct horse 9"


async def paste(client: LineClient, lines: list[str], prefix: str = "p") -> list[tuple[str, str]]:
    """
    Send C{lines} at once, each under a label of its own, and return each
    final reply line as C{(label, line)} in the order they came.
    """
    labels = [f"{prefix}{index}" for index in range(len(lines))]
    client.transport.write(b"".join(f"@label={label} {line}\n".encode() for label, line in zip(labels, lines)))
    finals = []
    while len(finals) < len(lines):
        line = await client.line()
        if not line.startswith("@label="):
            client.events.append(line)
            continue
        label, rest = line[len("@label="):].split(" ", 1)
        if rest.startswith(("OK:", "ERROR:")):
            finals.append((label, rest))
    return finals


def delayed(server, rate_class: str) -> float:
    """How many requests of C{rate_class} the server made wait so far."""
    return server.server.metrics.registry.get_sample_value(
        "lairchat_requests_delayed_total", {"class": rate_class}) or 0.0


class FloodControlEndToEndTests(TestCase):
    """Delays instead of refusals, against the real server."""

    async def test_pasted_lines_all_answered_in_order(self):
        """
        A bot pasting 40 lines into a room (well over the message burst)
        gets every one answered C{OK}, in order, under its label; none is
        refused, and the server counts the ones it delayed.
        """
        small = {"message": Rate(5, 200)}
        server = await start_server(self, rate_limits=True, connection_rates=small, address_rates=small,
                                    account_rates=small)
        bot = await server.user("bot", source="127.0.0.2")
        await bot.ok("CREATE_ROOM:hall")
        finals = await paste(bot, [f"line {n}" for n in range(40)])
        self.assertEqual([label for label, _ in finals], [f"p{n}" for n in range(40)])
        self.assertEqual([line.split(":")[:2] for _, line in finals], [["OK", "SEND_MESSAGE"]] * 40)
        ids = [int(line.split(":")[3]) for _, line in finals]
        self.assertEqual(ids, sorted(ids))
        self.assertGreater(delayed(server, "message"), 0)
        history = await bot.ok("GET_HISTORY:hall:50")
        self.assertEqual([line.rsplit(":", 1)[1] for line in history[:-1]], [f"line {n}" for n in range(40)])

    async def test_reconnecting_keeps_the_address_budget(self):
        """
        A connection that spent its address's budget and went away leaves
        it spent: a new connection from the same address is delayed too
        (and still answered), one from another address is not.
        """
        small = {"default": Rate(4, 4)}
        server = await start_server(self, rate_limits=True, connection_rates=small, address_rates=small)
        first = await server.connect("127.0.0.5")
        self.assertEqual(len(await paste(first, ["WHOAMI"] * 4)), 4)
        await first.close()
        self.assertEqual(delayed(server, "default"), 0)
        elsewhere = await server.connect("127.0.0.6")
        self.assertEqual([line[:15] for _, line in await paste(elsewhere, ["WHOAMI"] * 4)],
                         ["ERROR:1001:AUTH"] * 4)
        self.assertEqual(delayed(server, "default"), 0)
        again = await server.connect("127.0.0.5")
        finals = await paste(again, ["WHOAMI"] * 4)
        self.assertEqual([line[:15] for _, line in finals], ["ERROR:1001:AUTH"] * 4)
        self.assertGreater(delayed(server, "default"), 0)

    async def test_exempt_address_has_no_address_budget(self):
        """
        Connections from an exempt address are not held back by an
        address budget, however many there are; the same lines from an
        address that is not exempt are.
        """
        server = await start_server(
            self, rate_limits=True, connection_rates={}, address_rates={"default": Rate(1, 5)},
            exempt_networks=Networks(("127.0.0.9",)),
        )
        for _ in range(2):
            trusted = await server.connect("127.0.0.9")
            self.assertEqual(len(await paste(trusted, ["WHOAMI"] * 5)), 5)
        self.assertEqual(delayed(server, "default"), 0)
        other = await server.connect("127.0.0.10")
        self.assertEqual(len(await paste(other, ["WHOAMI"] * 2)), 2)
        self.assertEqual(delayed(server, "default"), 1)

    async def test_flood_past_the_backlog_is_cut_off(self):
        """
        A client that sends far more than the backlog allows gets a clear
        C{1110} line (under the label of the line that went over) and is
        disconnected; nothing follows that line.
        """
        server = await start_server(self, rate_limits=True, connection_rates={"default": Rate(2, 10)},
                                    flood_backlog=0.5)
        flooder = await server.connect("127.0.0.11")
        flooder.transport.write(b"".join(f"@label=f{n} WHOAMI\n".encode() for n in range(400)))
        received = []
        while not any("ERROR:1110:" in line for line in received):
            received.append(await flooder.line())
        await flooder.closed
        last = received[-1]
        self.assertRegex(last, r"^@label=f\d+ ERROR:1110:RATE_LIMITED:flooding.*disconnected")
        for n, line in enumerate(received[:-1]):
            self.assertTrue(line.startswith(f"@label=f{n} ERROR:1001:AUTH_REQUIRED:"), line)
        self.assertEqual(server.server.metrics.registry.get_sample_value(
            "lairchat_requests_refused_total", {"class": "default", "reason": "flood"}), 1.0)
        bystander = await server.connect("127.0.0.12")
        self.assertEqual(await bystander.request("PING"), ["OK:PING"])

    async def test_registrations_per_address_refused_with_retry_time(self):
        """
        Past the registrations an address may make in an hour, C{REGISTER}
        is C{1110} saying in how many whole seconds (at least one) the next
        is allowed; another address registers as usual.
        """
        server = await start_server(self, rate_limits=True, registrations_per_hour=2)
        client = await server.connect("127.0.0.7")
        await client.ok(f"REGISTER:alice:{PASSWORD}")
        await client.ok(f"REGISTER:bob:{PASSWORD}")
        [refused] = await client.request(f"REGISTER:carol:{PASSWORD}")
        match = re.fullmatch(
            r"ERROR:1110:RATE_LIMITED:too many registrations from your address; retry in (\d+) s", refused)
        self.assertIsNotNone(match, refused)
        self.assertTrue(1 <= int(match.group(1)) <= 1800, refused)
        other = await server.connect("127.0.0.8")
        await other.ok(f"REGISTER:carol:{PASSWORD}")
