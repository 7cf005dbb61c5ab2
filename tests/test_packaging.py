"""
Tests of lairchat as installed (C{pip install .}): the twistd plugin, the
command plugins, the schema, C{twistd lairchat} itself and the
C{lairchat-admin} script.

Trial run from the source tree imports the source tree, which hides
packaging mistakes (a plugin left out of the wheel, a command module that
fails to import and silently vanishes); these tests look at the installed
files and run the installed C{twistd}.
"""

import os
import sys
import sysconfig
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.internet.utils import getProcessOutputAndValue
from twisted.plugin import IPlugin, getPlugins
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from lairchat.interfaces import ICommand
from lairchat.plugins import load_commands
from lairchat.tap import LairchatService

REPOSITORY = Path(__file__).resolve().parents[1]
"""The source tree these tests are in."""

PURELIB = Path(sysconfig.get_paths()["purelib"])
"""Where C{pip install .} put the packages."""

DATA = Path(sysconfig.get_paths()["data"])
"""Where C{pip install .} put the data files (C{share/...})."""

BIN = Path(sys.executable).parent
"""The virtualenv's scripts (C{twistd})."""

EXPECTED_COMMANDS = [
    "HELP", "SHOW_HELP", "PING", "QUIT", "REGISTER", "LOGIN", "RESUME", "LOGOUT", "CHANGE_PASSWORD",
    "WHOAMI", "REQUEST_USER_LIST",
]
"""Commands that must be registered whatever else is."""


def modules(directory: Path) -> set[str]:
    """The names of the Python modules directly in C{directory}."""
    return {path.name for path in directory.glob("*.py")}


def lairchat_makers() -> list:
    """Every L{IServiceMaker} plugin named C{lairchat}."""
    return [maker for maker in getPlugins(IServiceMaker) if maker.tapname == "lairchat"]


class InstalledFilesTests(SynchronousTestCase):
    """
    The files C{pip install .} puts in the virtualenv.
    """

    def test_plugin_installed(self):
        """
        The twistd plugin is in the installed C{twisted/plugins}, and the
        source tree's C{twisted} has no C{__init__.py} (which would shadow
        Twisted itself).
        """
        self.assertTrue((PURELIB / "twisted" / "plugins" / "lairchat_plugin.py").is_file())
        self.assertFalse((REPOSITORY / "twisted" / "__init__.py").exists())
        self.assertFalse((REPOSITORY / "twisted" / "plugins" / "__init__.py").exists())

    def test_every_command_module_installed(self):
        """
        Every module of the source tree's C{commands} is installed.
        """
        source = modules(REPOSITORY / "commands")
        self.assertTrue({"__init__.py", "auth.py", "session.py"} <= source)
        missing = source - modules(PURELIB / "commands")
        self.assertEqual(missing, set(), "not installed (run pip install .)")

    def test_every_package_module_installed(self):
        """
        Every module and subpackage of C{lairchat} is installed (the
        packages are listed one by one in C{setup.cfg}).
        """
        for directory in [REPOSITORY / "lairchat", *(p.parent for p in (REPOSITORY / "lairchat").glob("*/__init__.py"))]:
            relative = directory.relative_to(REPOSITORY)
            missing = modules(directory) - modules(PURELIB / relative)
            self.assertEqual(missing, set(), f"{relative} not installed (run pip install .)")

    def test_admin_script_installed(self):
        """
        C{pip install .} installs the C{lairchat-admin} console script,
        declared as an entry point that names L{lairchat.admin_cli.main}.
        """
        from importlib.metadata import entry_points

        [script] = entry_points(group="console_scripts", name="lairchat-admin")
        self.assertEqual(script.value, "lairchat.admin_cli:main")
        self.assertTrue((BIN / "lairchat-admin").is_file(), "lairchat-admin is not installed (run pip install .)")

    def test_schema_installed(self):
        """
        The installed C{share/lairchat/schema.sql} is the source tree's.
        """
        installed = DATA / "share" / "lairchat" / "schema.sql"
        self.assertEqual(installed.read_text(encoding="utf-8"),
                         (REPOSITORY / "schema.sql").read_text(encoding="utf-8"),
                         "the installed schema is stale (run pip install .)")


class ServiceMakerTests(SynchronousTestCase):
    """
    The C{lairchat} L{IServiceMaker}, as twistd finds it.
    """

    def test_found_once(self):
        """
        Exactly one plugin is named C{lairchat}, and it provides
        L{IServiceMaker} and L{IPlugin}.
        """
        makers = lairchat_makers()
        self.assertEqual(len(makers), 1)
        self.assertTrue(verifyObject(IServiceMaker, makers[0]))
        self.assertTrue(verifyObject(IPlugin, makers[0]))
        self.assertTrue(makers[0].description)

    def test_make_service(self):
        """
        Its options parse an empty command line, and C{makeService} builds
        a L{LairchatService} (not started).
        """
        [maker] = lairchat_makers()
        options = maker.options()
        options.parseOptions([])
        service = maker.makeService(options)
        self.assertIsInstance(service, LairchatService)
        self.assertEqual(service.endpoints, ["tcp:8080"])
        self.assertFalse(service.running)


class CommandPluginTests(SynchronousTestCase):
    """
    The command registry built from the plugins in C{commands}.
    """

    def test_expected_commands(self):
        """
        The session and account commands are registered, under their names
        and aliases.
        """
        registry = load_commands()
        for name in EXPECTED_COMMANDS:
            self.assertIn(name, registry)
        self.assertIs(registry["SHOW_HELP"], registry["HELP"])

    def test_every_command_provides_icommand(self):
        """
        Every registered command provides L{ICommand}, has an upper-case
        name, a syntax starting with it, a summary, a sane arity, and is
        registered under each of its names.
        """
        registry = load_commands()
        for key, command in registry.items():
            self.assertTrue(verifyObject(ICommand, command), key)
            self.assertIn(key, (command.name, *command.aliases))
            self.assertEqual(command.name, command.name.upper())
            self.assertTrue(command.syntax.startswith(command.name), command.syntax)
            self.assertTrue(command.summary.strip(), key)
            low, high = command.arity
            self.assertTrue(0 <= low <= high, key)

    def test_every_module_contributes(self):
        """
        Every module of C{commands} that defines commands has each of them
        registered: a module that failed to import would silently vanish.
        """
        import importlib

        registry = load_commands()
        registered = {id(command) for command in registry.values()}
        for name in sorted(modules(REPOSITORY / "commands") - {"__init__.py"}):
            module = importlib.import_module(f"commands.{name[:-3]}")
            for value in vars(module).values():
                if ICommand.providedBy(value) and not isinstance(value, type):
                    self.assertIn(id(value), registered, f"{name}: {value!r} is not registered")


class TwistdTests(TestCase):
    """
    The installed C{twistd} finds and runs the plugin.
    """

    def environment(self) -> dict:
        """This process's environment, minus anything that would import the source tree."""
        environment = dict(os.environ)
        environment.pop("PYTHONPATH", None)
        return environment

    async def test_listed(self):
        """
        C{twistd --help} lists C{lairchat}.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        out, err, code = await getProcessOutputAndValue(
            str(BIN / "twistd"), ["--help"], env=self.environment(), path=directory)
        self.assertEqual(code, 0, err)
        self.assertIn(b"lairchat", out)

    async def test_admin_help(self):
        """
        The installed C{lairchat-admin --help} runs and lists its
        subcommands.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        out, err, code = await getProcessOutputAndValue(
            str(BIN / "lairchat-admin"), ["--help"], env=self.environment(), path=directory)
        self.assertEqual(code, 0, err)
        for command in [b"set-password", b"set-role", b"suspend", b"unsuspend", b"list-blocks", b"unblock"]:
            self.assertIn(command, out)
        self.assertEqual(os.listdir(directory), [])

    async def test_bad_option(self):
        """
        C{twistd lairchat --max-line nope} exits non-zero with a usage
        message, and starts nothing.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        out, err, code = await getProcessOutputAndValue(
            str(BIN / "twistd"), ["-n", "--pidfile=", "lairchat", "--max-line", "nope"],
            env=self.environment(), path=directory)
        self.assertNotEqual(code, 0)
        output = out + err
        self.assertIn(b"--max-line must be a whole number", output)
        self.assertIn(b"Usage:", output)
        self.assertEqual(os.listdir(directory), [])
