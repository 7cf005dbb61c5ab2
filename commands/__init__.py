"""
lairchat's command plugins: every module here provides L{ICommand} objects
(and optionally L{IExtension} objects), found with
L{twisted.plugin.getPlugins}.  A deployment can drop more modules into a
C{commands} directory on C{sys.path}.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
