"""What every panel shares: the session, a root widget and a message line for errors."""

from __future__ import annotations

import functools
import html

import ipywidgets as w
from nuskybgd_engine.errors import NuSkyBgdError

from ..user_api import UserApi

__all__ = ["Panel", "SharedLooks", "guarded"]

_COLOURS = {"error": "#b00020", "warning": "#8a5a00", "info": "#1b5e20"}


class SharedLooks:
    """Layouts and styles shared by the many alike cells of a table or grid.

    Each widget's layout and style is a model of its own that the browser must create; one per
    column instead of one per cell (the parameter table: ~570 of the ~2000 models of a first view).
    Never mutate a shared one for a single cell.
    """

    def __init__(self):
        self._made = {}

    def layout(self, **kw):
        key = ("layout", *sorted(kw.items()))
        if key not in self._made:
            self._made[key] = w.Layout(**kw)
        return self._made[key]

    def style(self, widget_class):
        """A style for ``widget_class`` (w.HTML, w.Checkbox, ...): the class its ``style`` trait takes."""
        if widget_class not in self._made:
            self._made[widget_class] = widget_class.class_traits()["style"].klass()
        return self._made[widget_class]


def guarded(method):
    """Run a widget handler; a NuSkyBgdError (bad input) is shown in the panel, not raised."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except NuSkyBgdError as exc:
            self.show(str(exc), "error")
            return None

    return wrapper


class Panel:
    """Base of the panels: ``widget`` (root ipywidget), ``session`` and ``message`` (HTML, class nsb-message).

    ``user_api`` is the panel's scripting API: the names in ``api_expose`` (methods, settable
    widgets) and ``api_readonly``, see :class:`~nuskybgd_widgets.user_api.UserApi`.
    """

    title = ""
    api_expose = ()
    api_readonly = ()

    def __init__(self, session):
        self.session = session
        self.message = w.HTML("").add_class("nsb-message")
        self.widget = None

    @property
    def user_api(self):
        """The documented scripting API of this panel (what its buttons and boxes do)."""
        return UserApi(self, self.api_expose, self.api_readonly)

    def show(self, text, level="info"):
        """Show one message line in the panel (and in the session's message list)."""
        colour = _COLOURS.get(level, "black")
        self.message.value = f'<span style="color:{colour}">{html.escape(str(text))}</span>' if text else ""
        if text and level == "error":
            self.session.say(text, level)

    def _header(self):
        return w.HTML(f"<b>{html.escape(self.title)}</b>")
