"""An app module that cannot be imported: the server must stop with a clear message."""

raise ImportError("this fixture app is broken on purpose")
