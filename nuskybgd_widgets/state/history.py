"""Undo/redo of parameter edits and fits: snapshots of :attr:`BackgroundModelState.parameters`.

Each user step that changes values or freezes (a cell edit, freeze/thaw, a fit, a reset) records
the snapshot from *before* it; :meth:`UndoHistory.undo` sets that snapshot back with
:meth:`~.model.BackgroundModelState.restore_parameters` and keeps the current one for
:meth:`~UndoHistory.redo`. Snapshots are immutable tuples, so a step costs one reference.
"""

from __future__ import annotations

import contextlib

from traitlets import Bool, HasTraits, Unicode

from nuskybgd_engine.errors import BadConfigError

__all__ = ["UndoHistory"]


class UndoHistory(HasTraits):
    """Undo and redo stacks over a :class:`~.model.BackgroundModelState`.

    Parameters
    ----------
    model : BackgroundModelState
    limit : int
        Steps kept (the oldest are dropped).
    """

    #: True when there is a step to undo / redo (the buttons' ``disabled``).
    can_undo = Bool(False)
    can_redo = Bool(False)
    #: What the next undo / redo would undo / redo ("" when nothing).
    undo_label = Unicode("")
    redo_label = Unicode("")

    def __init__(self, model, limit=100):
        super().__init__()
        self.model = model
        self.limit = int(limit)
        self._undo = []  # [(label, snapshot before the step)]
        self._redo = []  # [(label, snapshot after the step)]

    def _publish(self):
        with self.hold_trait_notifications():
            self.can_undo, self.can_redo = bool(self._undo), bool(self._redo)
            self.undo_label = self._undo[-1][0] if self._undo else ""
            self.redo_label = self._redo[-1][0] if self._redo else ""

    @contextlib.contextmanager
    def step(self, label):
        """Record the step run inside when it changed the parameters (a fit that raised after
        moving the values too: its values can be undone)."""
        before = self.model.parameters
        try:
            yield
        finally:
            if before and self.model.parameters != before:
                self._undo = (self._undo + [(label, before)])[-self.limit:]
                self._redo = []
                self._publish()

    def undo(self):
        """Set the parameters back to before the last step; returns its label."""
        return self._move(self._undo, self._redo, "undo")

    def redo(self):
        """Do the last undone step again; returns its label."""
        return self._move(self._redo, self._undo, "redo")

    def _move(self, source, target, verb):
        if not source:
            raise BadConfigError(f"nothing to {verb}", field=verb)
        label, rows = source.pop()
        target.append((label, self.model.parameters))
        try:
            self.model.restore_parameters(rows)
        finally:
            self._publish()
        return label

    def rename(self, renamed):
        """Spectra were renamed (``{new name: old name}``, e.g. a region renamed, or the names gained
        their observation key when a second observation was added): the recorded steps follow."""
        if not renamed:
            return
        back = {old: new for new, old in renamed.items()}

        def moved(rows):
            return tuple(r._replace(spectrum=back[r.spectrum]) if r.spectrum in back else r for r in rows)

        self._undo = [(label, moved(rows)) for label, rows in self._undo]
        self._redo = [(label, moved(rows)) for label, rows in self._redo]

    def clear(self):
        """Forget every step (a new observation)."""
        self._undo, self._redo = [], []
        self._publish()
