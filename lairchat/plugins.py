# -*- test-case-name: tests.test_packaging -*-
"""
Finding the command plugins and extensions in the C{commands} package.
"""

from twisted.plugin import getPlugins

from lairchat.interfaces import ICommand, IExtension


def load_commands(package: object = None) -> dict:
    """
    Every L{ICommand} plugin by each of its names (canonical and aliases).

    @raise ValueError: two commands claim the same name.
    """
    if package is None:
        import commands as package
    registry: dict = {}
    for command in getPlugins(ICommand, package):
        for name in (command.name, *command.aliases):
            if name in registry and registry[name] is not command:
                raise ValueError(f"two commands are named {name}")
            registry[name] = command
    return registry


def load_extensions(package: object = None) -> list:
    """Every L{IExtension} plugin."""
    if package is None:
        import commands as package
    return list(getPlugins(IExtension, package))
