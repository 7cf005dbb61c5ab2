"""
Real IRC clients against a real server: WeeChat (headless) and irssi
(under tmux) log in with SASL PLAIN, join a room, chat both ways with a
line-protocol (telnet) user, and read what history IRC offers.  Not a
test of the trial suite (CI has no irssi or weechat): a documented check
beside it, which prints each step and PASS, FAIL or SKIP (a feature the
server does not have yet), and exits 1 when a step failed.

    .venv/bin/python bench/irc_clients.py [--keep DIR]

It installs the Debian packages C{irssi}, C{weechat-headless} and C{tmux}
when they are missing (C{apt-get}, as root), starts an embedded Postgres
and C{twistd -n lairchat --irc-port ...} in a temporary directory
(L{harness.Environment}), makes the accounts with C{lairchat-admin
set-password}, and drives the clients: WeeChat through its FIFO pipe,
reading what it shows from its logger's files; irssi with C{tmux
send-keys}, reading its screen with C{tmux capture-pane} and its query
window from its autolog.  The client commands are those of the README's
"Connect with irssi / weechat".  C{--keep DIR} keeps the clients' logs
and the server's there.

Steps, per client: the SASL login (C{900}); a direct message sent while
the client was offline, delivered at login (the history IRC has today);
the join seen by the telnet user; a message each way; the IRC message in
the room's history on the line protocol (C{GET_HISTORY}); C{CHATHISTORY}
(SKIP while the server answers C{421}); an invitation from the telnet user
to a private room, shown, and the join it allows.
"""

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import PASSWORD, Client, Environment, free_port  # noqa: E402

CLIENT_PASSWORD = "client-pass-1"
"""The IRC accounts' password (no spaces: client command lines split on them)."""

PACKAGES = {"irssi": "irssi", "weechat-headless": "weechat-headless", "tmux": "tmux"}
"""The Debian package of each program this script needs."""

WAIT = 20.0
"""How long a step waits for what it expects, in seconds."""


class Steps:
    """The steps checked so far, printed as they end."""

    def __init__(self) -> None:
        self.results: list[tuple[str, str]] = []

    def record(self, name: str, verdict: str, detail: str = "") -> None:
        """Print and keep one step's verdict (PASS, FAIL or SKIP)."""
        self.results.append((name, verdict))
        print(f"{verdict:4}  {name}{': ' + detail if detail else ''}", flush=True)

    async def check(self, name: str, found: Callable[[], bool], detail: str = "") -> bool:
        """PASS when C{found()} becomes true within L{WAIT} seconds, else FAIL."""
        ok = await eventually(found)
        self.record(name, "PASS" if ok else "FAIL", "" if ok else detail)
        return ok

    @property
    def failed(self) -> bool:
        """Whether a step failed."""
        return any(verdict == "FAIL" for _, verdict in self.results)


async def eventually(found: Callable[[], bool], seconds: float = WAIT) -> bool:
    """Whether C{found()} is true, or becomes so within C{seconds} (polled)."""
    deadline = time.monotonic() + seconds
    while True:
        if found():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


def install_missing() -> None:
    """Install the Debian packages of the programs that are missing."""
    missing = [package for program, package in PACKAGES.items() if shutil.which(program) is None]
    if not missing:
        return
    print(f"installing {' '.join(missing)}", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([*sudo, "apt-get", "install", "-y", *missing], check=True, env=environment,
                   stdout=subprocess.DEVNULL)


def make_account(env: Environment, name: str, password: str) -> None:
    """Create an account with C{lairchat-admin set-password}."""
    admin = Path(sys.executable).parent / "lairchat-admin"
    subprocess.run([str(admin), "--dsn", env.dsn, "set-password", name, "--password-stdin"],
                   input=(password + "\n").encode(), check=True, stdout=subprocess.DEVNULL)


def text_of(path: Path) -> str:
    """A file's text, or nothing while it does not exist."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def texts_under(directory: Path) -> str:
    """Every file's text under C{directory}, run together."""
    return "".join(text_of(p) for p in sorted(directory.rglob("*")) if p.is_file())


class Telnet:
    """The line-protocol user: a harness client logged in, keeping every event line it is sent."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.events: list[str] = []
        client.on_event = lambda line, now: self.events.append(line)

    def saw(self, prefix: str, suffix: str = "") -> bool:
        """Whether an event line starting with C{prefix} (and ending with C{suffix}) came."""
        return any(e.startswith(prefix) and e.endswith(suffix) for e in self.events)

    def heard(self, room: str, sender: str, text: str) -> bool:
        """Whether C{MESSAGE:<room>:<id>:<sender>:<ts>:<text>} came."""
        return any(e.split(":", 5)[:2] + e.split(":", 5)[3:4] + e.split(":", 5)[5:] == ["MESSAGE", room, sender, text]
                   for e in self.events)


async def history_holds(telnet: Telnet, room: str, sender: str, text: str) -> bool:
    """Whether the room's history on the line protocol holds C{text} from C{sender}."""
    reply = await telnet.client.request(f"GET_HISTORY:{room}:50")
    return any(line.startswith(f"HISTORY:{room}:") and f":{sender}:" in line and line.endswith(":" + text)
               for line in reply)


async def check_weechat(env: Environment, irc_port: int, telnet: Telnet, home: Path, steps: Steps) -> None:
    """WeeChat (headless): SASL, offline DM, join, both ways, history, an invitation."""
    nick = "wee"
    await telnet.client.ok(f"DM:{nick}:sent while weechat was away")
    await telnet.client.ok("SEND_MESSAGE:lounge:before weechat joined")
    commands = "; ".join([
        "/set logger.file.flush_delay 0",
        f"/server add lair 127.0.0.1/{irc_port}",
        f"/set irc.server.lair.nicks {nick}",
        "/set irc.server.lair.sasl_mechanism plain",
        f"/set irc.server.lair.sasl_username {nick}",
        f"/set irc.server.lair.sasl_password {CLIENT_PASSWORD}",
        "/set irc.server.lair.autojoin #lounge",
        "/connect lair",
    ])
    process = subprocess.Popen(["weechat-headless", "--dir", str(home), "-r", commands],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        logs = home / "logs"
        server_log = logs / "irc.server.lair.weechatlog"
        channel_log = logs / "irc.lair.#lounge.weechatlog"
        fifo = home / f"weechat_fifo_{process.pid}"

        def send(buffer: str, command: str) -> None:
            with open(fifo, "w") as pipe:
                pipe.write(f"{buffer} *{command}\n")

        await steps.check("weechat: SASL PLAIN login (900)",
                          lambda: f"You are now logged in as {nick}" in text_of(server_log),
                          f"see {server_log}")
        await steps.check("weechat: direct message sent while offline delivered at login",
                          lambda: "sent while weechat was away" in text_of(logs / "irc.lair.alice.weechatlog"))
        await steps.check("weechat: join #lounge seen by the telnet user", lambda: telnet.saw(f"USER_JOINED:lounge:{nick}"))
        if not await eventually(fifo.exists):
            steps.record("weechat: FIFO pipe", "FAIL", f"no {fifo}")
            return
        send("irc.lair.#lounge", "hello from weechat")
        await steps.check("weechat -> telnet: message in #lounge",
                          lambda: telnet.heard("lounge", nick, "hello from weechat"))
        await telnet.client.ok("SEND_MESSAGE:lounge:hello from telnet")
        await steps.check("telnet -> weechat: message shown in #lounge",
                          lambda: "alice\thello from telnet" in text_of(channel_log), f"see {channel_log}")
        stored = await history_holds(telnet, "lounge", nick, "hello from weechat")
        steps.record("weechat: its message in the room's history (line protocol GET_HISTORY)",
                     "PASS" if stored else "FAIL")
        await check_chathistory(steps, "weechat", lambda: send("irc.server.lair", "/quote CHATHISTORY LATEST #lounge * 10"),
                                lambda: texts_under(logs), "before weechat joined")
        await telnet.client.ok(f"INVITE_USER:{nick}:den:come in")
        await steps.check("weechat: invitation to the private #den shown",
                          lambda: "#den" in text_of(server_log), f"see {server_log}")
        send("irc.server.lair", "/join #den")
        await steps.check("weechat: joins #den by the invitation, seen by the telnet user",
                          lambda: telnet.saw(f"USER_JOINED:den:{nick}"))
        send("irc.server.lair", "/quit")
        await eventually(lambda: process.poll() is not None, 10)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait()


async def check_chathistory(steps: Steps, client: str, ask: Callable[[], None], shown: Callable[[], str],
                            text: str) -> None:
    """
    Ask for the room's history with C{CHATHISTORY}: PASS when C{text} (sent
    before the client joined) is shown, SKIP when the server answers
    C{421} (not there yet), FAIL otherwise.
    """
    before = shown()
    ask()
    name = f"{client}: CHATHISTORY LATEST shows a message from before the join"

    def grew(what: str) -> bool:
        # the logs are several files read together: count, do not slice
        return shown().count(what) > before.count(what)

    await eventually(lambda: grew(text) or grew("Unknown command"))
    if grew(text):
        steps.record(name, "PASS")
    elif grew("Unknown command"):
        steps.record(name, "SKIP", "the server answers 421: no CHATHISTORY yet")
    else:
        steps.record(name, "FAIL", "neither the history nor 421")


class Tmux:
    """A tmux session of its own running one program."""

    def __init__(self, name: str, command: list[str]) -> None:
        self.name = name
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "200", "-y", "50", *command], check=True)

    def keys(self, line: str) -> None:
        """Type a line and press Enter."""
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", line], check=True)
        subprocess.run(["tmux", "send-keys", "-t", self.name, "Enter"], check=True)

    def screen(self) -> str:
        """What the window shows, with its scrollback."""
        result = subprocess.run(["tmux", "capture-pane", "-p", "-J", "-S", "-500", "-t", self.name],
                                capture_output=True, text=True)
        return result.stdout

    def kill(self) -> None:
        """End the session."""
        subprocess.run(["tmux", "kill-session", "-t", self.name], stderr=subprocess.DEVNULL)


async def check_irssi(env: Environment, irc_port: int, telnet: Telnet, home: Path, steps: Steps) -> None:
    """irssi under tmux: SASL, offline DM, join, both ways, history, an invitation."""
    nick = "irs"
    await telnet.client.ok(f"DM:{nick}:sent while irssi was away")
    await telnet.client.ok("SEND_MESSAGE:lounge:before irssi joined")
    home.mkdir(parents=True, exist_ok=True)
    logs = home / "logs"
    session = Tmux(f"lairchat-irssi-{os.getpid()}", ["irssi", f"--home={home}", f"--nick={nick}"])
    try:
        if not await eventually(lambda: "Irssi" in session.screen()):
            steps.record("irssi: started under tmux", "FAIL", session.screen()[-500:])
            return
        session.keys(f"/set autolog_path {logs}/$tag/$0.log")
        session.keys("/set autolog on")
        session.keys(f"/network add -sasl_mechanism PLAIN -sasl_username {nick} -sasl_password {CLIENT_PASSWORD} lair")
        session.keys(f"/server add -notls -network lair 127.0.0.1 {irc_port}")
        session.keys("/connect lair")
        await steps.check("irssi: SASL PLAIN login (900)",
                          lambda: f"You are now logged in as {nick}" in session.screen(), session.screen()[-800:])
        await steps.check("irssi: direct message sent while offline delivered at login",
                          lambda: "sent while irssi was away" in texts_under(logs))
        session.keys("/join #lounge")
        await steps.check("irssi: join #lounge seen by the telnet user", lambda: telnet.saw(f"USER_JOINED:lounge:{nick}"))
        session.keys("/window goto #lounge")
        session.keys("hello from irssi")
        await steps.check("irssi -> telnet: message in #lounge", lambda: telnet.heard("lounge", nick, "hello from irssi"))
        await telnet.client.ok("SEND_MESSAGE:lounge:hello from telnet to irssi")
        await steps.check("telnet -> irssi: message shown in #lounge",
                          lambda: "hello from telnet to irssi" in session.screen(), session.screen()[-800:])
        stored = await history_holds(telnet, "lounge", nick, "hello from irssi")
        steps.record("irssi: its message in the room's history (line protocol GET_HISTORY)", "PASS" if stored else "FAIL")
        session.keys("/window goto 1")
        await check_chathistory(steps, "irssi", lambda: session.keys("/quote CHATHISTORY LATEST #lounge * 10"),
                                lambda: session.screen() + texts_under(logs), "before irssi joined")
        await telnet.client.ok(f"INVITE_USER:{nick}:den:come in")
        await steps.check("irssi: invitation to the private #den shown",
                          lambda: "#den" in session.screen(), session.screen()[-800:])
        session.keys("/join #den")
        await steps.check("irssi: joins #den by the invitation, seen by the telnet user",
                          lambda: telnet.saw(f"USER_JOINED:den:{nick}"))
        session.keys("/quit")
    finally:
        session.kill()


async def run(keep: Path | None) -> bool:
    """Start the server, check both clients; whether every step passed (or was skipped)."""
    steps = Steps()
    irc_port = free_port()
    with Environment(extra_args=("--irc-port", f"tcp:{irc_port}:interface=127.0.0.1"),
                     keep_logs=str(keep) if keep else None) as env:
        env.start_server()
        await env.wait_for_server()
        for name, password in (("alice", PASSWORD), ("wee", CLIENT_PASSWORD), ("irs", CLIENT_PASSWORD)):
            make_account(env, name, password)
        telnet = Telnet(await Client.login(env.port, "alice"))
        await telnet.client.ok("CREATE_ROOM:lounge")
        await telnet.client.ok("CREATE_ROOM:den:private")
        clients = env.directory / "clients"
        try:
            await check_weechat(env, irc_port, telnet, clients / "weechat", steps)
            await check_irssi(env, irc_port, telnet, clients / "irssi", steps)
        finally:
            telnet.client.close()
            if keep is not None:
                shutil.copytree(clients, keep / "clients", dirs_exist_ok=True)
        for problem in env.log_problems():
            print(f"server log: {problem}")
    passed = sum(1 for _, v in steps.results if v == "PASS")
    skipped = sum(1 for _, v in steps.results if v == "SKIP")
    print(f"{passed} passed, {len(steps.results) - passed - skipped} failed, {skipped} skipped")
    return not steps.failed


def main() -> None:
    """Parse the arguments, install what is missing, run the checks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="keep the clients' and the server's logs in this directory")
    options = parser.parse_args()
    install_missing()
    sys.exit(0 if asyncio.run(run(options.keep)) else 1)


if __name__ == "__main__":
    main()
