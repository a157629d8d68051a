"""The vocabulary of the ``.xcm`` reader: what is read, ignored, refused (Tcl) and abbreviated."""

from __future__ import annotations

import re

__all__ = ["TCL", "IGNORED", "REFUSED", "COMMANDS", "SETTINGS", "ABBREV", "PARAM_START"]

#: Tcl commands: refused (the reader never executes Tcl).
TCL = {"puts", "set", "tclout", "tcloutr", "proc", "if", "else", "elseif", "for", "foreach", "while",
       "scan", "open", "close", "source", "gets", "read", "expr", "return", "incr", "lappend", "append",
       "global", "upvar", "switch", "catch", "eval", "format", "exec", "file", "array", "string",
       "list", "lindex", "llength", "unset", "break", "continue", "flush", "namespace", "package",
       "after", "cd", "pwd", "glob", "info", "regexp", "regsub", "split", "join", "uplevel", "rename",
       "variable", "exit", "quit", "clock", "fconfigure", "seek", "tell", "eof", "subst", "trace",
       "lsort", "lsearch", "lrange", "lreplace", "linsert", "concat", "dict", "apply", "lassign",
       "lset", "encoding", "load", "interp", "history", "time", "vwait", "update", "error",
       "unknown", "auto_load", "pid", "socket", "binary", "chan", "coroutine", "yield", "tailcall",
       "try", "throw", "zlib", "lmap", "lreverse", "lrepeat", "script", "log"}
# XSPEC's own `error`, `time`, `log`, `script`, `exit` shadow Tcl: those are handled as XSPEC
# interactive commands below (ignored), not refused.
TCL -= {"error", "time", "log", "script", "exit", "quit"}

IGNORED = {"cpd", "setplot", "plot", "iplot", "fit", "query", "show", "log", "renorm", "error", "writefits",
           "steppar", "flux", "lumin", "eqwidth", "goodness", "ftest", "chatter", "help", "version", "save",
           "exit", "quit", "wdata", "hardcopy", "autosave", "title", "identify", "margin", "lrt", "simftest",
           "rerror", "parallel", "chain", "time", "script", "abort", "visualize"}

REFUSED = {"addcomp", "delcomp", "editmod", "mdefine", "lmod", "energies", "gain", "fakeit", "weight",
           "dummyrsp", "diagrsp", "corfile", "cornorm", "initpackage", "undo", "respar"}

COMMANDS = ("statistic", "method", "abund", "xsect", "cosmo", "xset", "systematic", "bayes", "data",
            "backgrnd", "response", "arf", "ignore", "notice", "model", "newpar", "freeze", "thaw", "untie")
SETTINGS = ("statistic", "method", "abund", "xsect", "cosmo", "systematic")

#: Abbreviations in use in real files (XSPEC accepts any unique prefix; these are the usual).
ABBREV = {"back": "backgrnd", "resp": "response", "stat": "statistic", "meth": "method", "abun": "abund",
          "mo": "model", "da": "data", "new": "newpar", "xs": "xset"}

#: Start of a parameter line (a number, a link, a default) or a blank line.
PARAM_START = re.compile(r"^\s*(?:[-+.\d=/]|$)")
