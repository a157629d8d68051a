"""A panel's scripting API: a curated view of the panel (after jdaviz's ``core/user_api.py``).

``panel.user_api`` lists what a script may call or set (``dir(api)``, ``repr(api)``); everything
else (widgets, handlers, helpers) stays internal and may change between versions. Reading an
exposed widget gives its value; setting one sets the widget's value, exactly as a click does.
"""

from __future__ import annotations

import ipywidgets as w

__all__ = ["UserApi"]

_OWN = ("_obj", "_expose", "_readonly")


class UserApi:
    """Exposes the attributes ``expose`` (read/write) and ``readonly`` (read) of ``obj``.

    Parameters
    ----------
    obj : object
        The panel.
    expose : sequence of str
        Methods and settable attributes.
    readonly : sequence of str
        Attributes a script may read but not set.
    """

    def __init__(self, obj, expose=(), readonly=()):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_expose", tuple(expose) + tuple(readonly))
        object.__setattr__(self, "_readonly", tuple(readonly))

    def __dir__(self):
        return list(self._expose)

    def __getattr__(self, name):
        if name in _OWN or name not in self._expose:
            raise AttributeError(f"{type(self._obj).__name__}.user_api has no attribute {name!r} "
                                 f"(available: {', '.join(self._expose)})")
        value = getattr(self._obj, name)
        return value.value if isinstance(value, w.ValueWidget) else value

    def __setattr__(self, name, value):
        if name not in self._expose or name in self._readonly:
            raise AttributeError(f"{type(self._obj).__name__}.user_api: {name!r} cannot be set")
        target = getattr(self._obj, name)
        if isinstance(target, w.ValueWidget):
            target.value = value
        elif callable(target):
            raise AttributeError(f"{type(self._obj).__name__}.user_api: {name!r} is a method; call it")
        else:
            setattr(self._obj, name, value)

    def __repr__(self):
        return f"<{type(self._obj).__name__} API: {', '.join(self._expose)}>"
