"""
A client that stops reading is cut off once its backlog passes
C{--max-output-buffer}, and never holds back anyone else.
"""

from twisted.trial.unittest import TestCase

from tests.support import start_server

TEXT = "x" * 3900
"""A long message, so the flood fills socket buffers quickly."""


class SlowClientTests(TestCase):
    """One member stops reading while another floods the room."""

    timeout = 120

    async def test_slow_reader_is_disconnected(self):
        """
        The reader that stopped is disconnected by the server; a reader that
        keeps up gets every message.
        """
        server = await start_server(self, max_output_buffer=65536)
        sender = await server.user("sender")
        await sender.ok("CREATE_ROOM:flood")
        fast = await server.user("fast")
        await fast.ok("JOIN_ROOM:flood")
        slow = await server.user("slow")
        await slow.ok("JOIN_ROOM:flood")
        slow_user_id = None
        for user in server.server.hub.online_users():
            if user.username == "slow":
                slow_user_id = user.id
        self.assertIsNotNone(slow_user_id)
        slow.transport.pauseProducing()

        sent = 0
        while server.server.hub.is_online(slow_user_id) and sent < 6000:
            for _ in range(50):
                sent += 1
                sender.send(f"SEND_MESSAGE:flood:{sent} {TEXT}")
            answered = 0
            while answered < 50:
                line = await sender.line()
                if line.startswith(("OK:", "ERROR:")):
                    self.assertTrue(line.startswith("OK:SEND_MESSAGE:flood:"), line[:80])
                    answered += 1
        self.assertFalse(server.server.hub.is_online(slow_user_id),
                         f"the slow reader was still connected after {sent} messages")

        # The reader that kept up has every message, in order.
        for number in range(1, sent + 1):
            event = await fast.event("MESSAGE:flood:")
            self.assertEqual(event.split(":", 5)[5].split(" ", 1)[0], str(number))

        slow.transport.resumeProducing()
        await slow.closed
        self.assertTrue(slow.is_closed)
