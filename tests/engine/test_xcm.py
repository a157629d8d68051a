"""Tests of engine/xcm.py: the XSPEC .xcm reader and writer (spec §4, §6.1 item 18)."""

from __future__ import annotations

import math
import random

import pytest
from nuskybgd_engine.errors import BadConfigError, BadFileError, OutputExistsError
from nuskybgd_engine.xcm import (
    DataEntry,
    Link,
    ParamChange,
    ParamLine,
    ResponseEntry,
    XcmSession,
    apply_changes,
    format_factor,
    format_number,
    format_xcm,
    make_block,
    parse_link,
    parse_xcm,
    read_xcm,
    resolve_values,
    validate,
    write_xcm,
)

HEADER = """statistic chi
method leven 30000 1e-4
abund angr
data 1:1 a.pha
data 2:2 b.pha
response 2:1 a.rmf
response 2:2 b.rmf
"""


@pytest.fixture(scope="module")
def example_path(shared):
    path = shared / "spec" / "example_fit.xcm"
    if not path.is_file():
        pytest.skip(f"spec example not found at {path}")
    return path


@pytest.fixture(scope="module")
def example(example_path):
    return read_xcm(example_path)


def _write(tmp_path, text, name="t.xcm"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# The spec example (§4.3)
# ---------------------------------------------------------------------------------------------


def test_example_structure(example, example_path):
    s = example
    assert len(example_path.read_text().splitlines()) == 339
    assert s.n_groups == 3
    assert [(m.source, m.name) for m in s.models] == [(2, "apbgd"), (3, "intbgd"), (4, "fcxb"), (5, "intn")]
    assert [m.n_params_per_group for m in s.models] == [3, 91, 3, 4]
    assert [len(m.params) for m in s.models] == [9, 273, 9, 12]
    assert s.data == [(1, 1, "bgd1A_sr_g30.pha"), (2, 2, "bgd1B_sr_g30.pha"), (3, 3, "bgd2A_sr_g30.pha")]
    assert s.backgrounds == {1: "none", 2: "none", 3: "none"}
    assert ResponseEntry(5, 2, "diag.rmf") in s.responses and len(s.responses) == 12
    assert (4, 2, "fcxbB.arf") in s.arfs and len(s.arfs) == 6
    assert s.ignore == ["**:**-3.0 150.0-**"]
    assert s.settings == {"statistic": "chi", "method": "leven 30000 1e-4", "abund": "angr", "xsect": "vern",
                          "xset delta": "0.01", "systematic": "0"}
    assert s.notes == []


def test_example_values_and_links(example):
    apbgd, intbgd, fcxb, intn = example.models
    assert apbgd.param(1, 3) == ParamLine(0.0120664, 0.01)
    assert apbgd.param(1, 1).frozen and not apbgd.param(1, 3).frozen
    assert apbgd.param(3, 1) == Link(1.0, "apbgd", 1)
    assert apbgd.param(3, 3) == Link(0.856677, "apbgd", 3)
    assert fcxb.param(2, 1) == Link(1.0, "apbgd", 4)  # B reference shape (§4.3 note 14)
    assert fcxb.param(2, 3) == Link(1.0, "fcxb", 3)  # fcxb_config.links [1, 2] (note 15)
    assert intn.param(3, 4) == Link(0.7883165, "intn", 4)
    assert intbgd.global_index(3, 4) == 186
    values = resolve_values(example)
    # Hand computations from the numbers printed in §4.3 / the file.
    assert values[("apbgd", 9)] == pytest.approx(0.856677 * 0.0120664, rel=1e-15)
    assert values[("fcxb", 6)] == 1.284482e-05 == values[("fcxb", 3)]
    assert values[("fcxb", 4)] == 1.29 and values[("fcxb", 5)] == 41.13
    assert values[("intn", 12)] == pytest.approx(0.7883165 * 0.0003013788, rel=1e-15)
    assert values[("intbgd", 186)] == pytest.approx(0.618452 * 0.238232, rel=1e-15)
    assert len(values) == 9 + 273 + 9 + 12


def test_example_component_names(example):
    intbgd = example.models[1]
    names = intbgd.component_names
    assert names[:3] == ["apec", "lorentz", "lorentz_3"] and names[-1] == "lorentz_30" and len(names) == 30
    pnames = intbgd.parameter_names
    assert pnames[0] == ("apec", "kT") and pnames[4] == ("lorentz", "LineE")
    assert pnames[90] == ("lorentz_30", "norm") and len(pnames) == 91
    assert example.models[3].parameter_names == [("bknpower", n) for n in ("PhoIndx1", "BreakE", "PhoIndx2", "norm")]


def test_example_written_byte_for_byte(example, example_path):
    # The example was produced by the spec's writer: our conventions must reproduce it exactly.
    assert format_xcm(example) == example_path.read_text()


def test_example_round_trip_value_by_value(example):
    again = parse_xcm(format_xcm(example))
    assert again == example
    for a, b in zip(example.models, again.models):
        for p, q in zip(a.params, b.params):
            if isinstance(p, Link):
                assert (p.factor, p.model, p.index) == (q.factor, q.model, q.index)
            else:
                assert p.numbers() == q.numbers()
    assert resolve_values(again) == resolve_values(example)


def test_hand_built_session_matches_example(example, example_path):
    """Build the §4.3 session from the spec's listing (intbgd block taken from the file) and
    compare the written text line by line."""
    s = XcmSession(settings={"statistic": "chi", "method": "leven 30000 1e-4", "abund": "angr",
                             "xsect": "vern", "xset delta": "0.01", "systematic": "0"})
    names = ["bgd1A", "bgd1B", "bgd2A"]
    s.data = [DataEntry(i, i, f"{n}_sr_g30.pha") for i, n in enumerate(names, start=1)]
    s.backgrounds = {i: "none" for i in (1, 2, 3)}
    for i, n in enumerate(names, start=1):
        s.responses += [ResponseEntry(2, i, f"{n}_sr.rmf"), ResponseEntry(3, i, f"{n}_sr.rmf"),
                        ResponseEntry(4, i, f"{n}_sr.rmf"), ResponseEntry(5, i, "diag.rmf")]
        s.arfs += [ResponseEntry(2, i, f"{n}_sr_nsb.arf"), ResponseEntry(4, i, f"fcxb{n[-1]}.arf")]
    s.ignore = ["**:**-3.0 150.0-**"]
    F = -0.01  # frozen step
    apbgd = make_block(2, "apbgd", "cutoffpl", [
        ParamLine(1.29, F), ParamLine(41.13, F), ParamLine(0.0120664, 0.01),
        ParamLine(1.29, F), ParamLine(41.13, F), ParamLine(0.01728863, 0.01),
        Link(1, "apbgd", 1), Link(1, "apbgd", 2), Link(0.856677, "apbgd", 3)])
    fcxb = make_block(4, "fcxb", "cutoffpl", [
        Link(1, "apbgd", 1), Link(1, "apbgd", 2), ParamLine(1.284482e-05, 0.01),
        Link(1, "apbgd", 4), Link(1, "apbgd", 5), Link(1, "fcxb", 3),
        Link(1, "apbgd", 1), Link(1, "apbgd", 2), ParamLine(9.945677e-06, 0.01)])
    shape = [ParamLine(-0.05, F), ParamLine(124.0, F), ParamLine(-0.85, F)]
    intn = make_block(5, "intn", "bknpower", shape + [ParamLine(0.0003013788, 0.01)] + shape
                      + [ParamLine(0.0002903882, 0.01)] + shape + [Link(0.7883165, "intn", 4)])
    s.models = [apbgd, example.models[1], fcxb, intn]
    got = format_xcm(s).splitlines()
    want = example_path.read_text().splitlines()
    assert len(got) == len(want) == 339
    for n, (a, b) in enumerate(zip(got, want), start=1):
        assert a == b, f"line {n}"


# ---------------------------------------------------------------------------------------------
# Real files (IDL nuskybgd, XSPEC save all, hand-written scripts)
# ---------------------------------------------------------------------------------------------


@pytest.mark.requires_data
def test_idl_bgd_file(data_dir):
    path = data_dir / "nustar_jupiter_analysis" / "bgd_20013036002.xcm"
    text = path.read_text().splitlines()
    s = read_xcm(path)
    assert s.n_groups == 8 and len(s.data) == 8
    apbgd, intbgd, _fcxb, intn = s.models
    assert apbgd.components == [("nuabs", "nuabs"), ("powerlaw", "powerlaw"), ("highecut", "highecut")]
    assert apbgd.component_sizes == [4, 2, 2] and apbgd.n_params_per_group == 8 and len(apbgd.params) == 64
    assert intbgd.n_params_per_group == 4 + 29 * 3 + 4 and intbgd.components[-1] == ("apec", "apec")
    assert intbgd.parameter_names[0] == ("nuabs", "par1")
    assert any("nuabs" in n and "4 parameters" in n for n in s.notes)
    # The channel ignore string is kept verbatim (line 81 of the file).
    assert s.ignore == [text[80][len("ignore "):]]
    # Line 103: "= apbgd:6*2.39092" is global parameter 103 - 89 = 14 = group 2, local 6.
    assert text[102] == "= apbgd:6*2.39092"
    assert apbgd.params[13] == Link(2.39092, "apbgd", 6)
    assert ParamLine(0.00138253, 0.0001, 0, 0, 1e20, 1e24) == apbgd.params[5]
    # Line 283 "= intbgd:34*1.49632e + 12": XSPEC's spaced exponent.
    assert intbgd.params[283 - 155] == Link(1.49632e12, "intbgd", 34)
    values = resolve_values(s)
    assert values[("apbgd", 14)] == pytest.approx(2.39092 * 0.00138253, rel=1e-15)
    assert values[("intbgd", 1)] == values[("apbgd", 1)] == 0.0993395
    assert intn.params[-1] == Link(1.01360, "intn", 20)
    again = parse_xcm(format_xcm(s))
    assert again == s and resolve_values(again) == values


@pytest.mark.requires_data
@pytest.mark.parametrize("det", [0, 1, 2, 3])
@pytest.mark.parametrize("module", ["A", "B"])
def test_epoch0_save_all_files(data_dir, det, module):
    path = data_dir / "nustar_background" / f"epoch0_det{det}_FPM{module}.xcm"
    s = read_xcm(path)
    lines = path.read_text().splitlines()
    src1, cont = s.models
    assert src1.name is None and src1.source == 1
    assert src1.component_names == ["gaussian"] + [f"gaussian_{i}" for i in range(2, 7)]
    assert src1.n_params_per_group == 18 and len(src1.params) == 18
    assert (cont.source, cont.name, cont.expression) == (2, "cont", "bknpower")
    assert s.responses == [ResponseEntry(2, 1, "diag.rmf")]
    first = [float(t) for t in lines[12].split()]
    assert src1.params[0] == ParamLine(*first)
    assert s.ignore == [lines[3].split(None, 1)[1]]
    assert parse_xcm(format_xcm(s)) == s


@pytest.mark.requires_data
def test_hand_written_scripts(data_dir):
    s = read_xcm(data_dir / "nustar_sac" / "thf2prb.xcm")
    assert s.data == [(1, 1, "nu20102012001A06_cl_grade0_sr.pha"), (2, 2, "nu20102012001B06_cl_grade0_sr.pha")]
    (m,) = s.models
    assert m.components == [("constant", "constant"), ("apec", "apec")]  # 'const' abbreviation
    # "1.0 -0.1" then "/*": XSPEC defaults (model.dat) for group 1, links to group 1 for group 2.
    assert m.params[0] == ParamLine(1.0, -0.1)
    assert m.params[1] == ParamLine(1.0, 0.01) and m.params[2] == ParamLine(1.0, -0.001)
    assert m.params[5] == Link(1.0, "", 1)
    assert s.newpars == [ParamChange("untie", "", 6), ParamChange("thaw", "", 6)]
    eff = apply_changes(s)
    assert eff.models[0].params[5] == ParamLine(1.0, 0.1)  # untied (frozen like p1), then thawed
    assert any("'cpd' ignored" in n for n in s.notes) and any("'fit' ignored" in n for n in s.notes)
    assert any("'setplot' ignored" in n for n in s.notes)
    assert s.notice == ["*: 2.0-9.0"] and s.ignore == ["*:0.-2.0 10.0-**", "*:0.-2.5 7.0-**"]
    assert parse_xcm(format_xcm(s)) == s
    t = read_xcm(data_dir / "nustar_sac" / "apec1fit_fpm1_cstat.xcm")
    assert t.settings["abund"] == "file feld92a_coronal0.txt"
    # "model apec" + "/*": model.dat defaults (kT 1, Abundanc 1 frozen, Redshift 0 frozen, norm 1).
    assert t.models[0].params == [ParamLine(1.0, 0.01), ParamLine(1.0, -0.001), ParamLine(0.0, -0.01),
                                  ParamLine(1.0, 0.01)]
    assert t.notice == ["*: 2.0-7.0"]
    u = read_xcm(data_dir / "heasoft-test-base" / "apec1fit_fpmab_cstat.xcm")
    assert u.n_groups == 2 and len(u.models[0].params) == 10 and u.models[0].params[0] == ParamLine(1.0, -0.1)


# ---------------------------------------------------------------------------------------------
# Links
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, want", [
    ("apbgd:p3", (1.0, "apbgd", 3)),
    ("8.566770e-01*apbgd:p3", (0.856677, "apbgd", 3)),
    ("apbgd:3*0.85667", (0.85667, "apbgd", 3)),
    (" 8.566770e-01 * apbgd:3 ", (0.856677, "apbgd", 3)),
    ("intbgd:34*1.49632e + 12", (1.49632e12, "intbgd", 34)),
    ("2*apbgd:p1*0.5", (1.0, "apbgd", 1)),
    ("p4", (1.0, "cur", 4)),
    ("4", (1.0, "cur", 4)),
    ("-2.5*fcxb:p3", (-2.5, "fcxb", 3)),
])
def test_parse_link_forms(text, want):
    link = parse_link(text, "cur")
    assert (link.factor, link.model, link.index) == want


@pytest.mark.parametrize("text", ["apbgd:p3 + 2", "apbgd:p3/2", "2*3", "apbgd:p1*fcxb:p2", "foo", "",
                                  "nan*apbgd:p1", "apbgd:p0", "1e999*apbgd:p1"])
def test_parse_link_rejects(text):
    with pytest.raises(ValueError):
        parse_link(text)


def test_malformed_link_in_file_names_line(tmp_path):
    path = _write(tmp_path, HEADER + "model 2:m powerlaw\n1 0.01\n1 0.01\n= m:p1 + 1\n= m:p2\n")
    with pytest.raises(BadFileError) as err:
        read_xcm(path)
    msg = str(err.value)
    assert str(path) in msg and "line 11" in msg and "m:p1 + 1" in msg and "\n" not in msg


def test_chained_links_resolve():
    text = HEADER + "model 2:m powerlaw\n2 0.01\n3 0.01\n= 2*m:p1\n= 0.5*m:p3\n"
    values = resolve_values(parse_xcm(text))
    assert values == {("m", 1): 2.0, ("m", 2): 3.0, ("m", 3): 4.0, ("m", 4): 2.0}


@pytest.mark.parametrize("body, line, words", [
    ("= m:p2\n= m:p1\n= m:p1\n= m:p2\n", 9, "cycle"),
    ("= m:p1\n1 0.01\n= m:p1\n= m:p2\n", 9, "itself"),
    ("1 0.01\n1 0.01\n= m:p5\n= m:p2\n", 11, "does not exist"),
    ("1 0.01\n= other:p1\n= m:p1\n= m:p2\n", 10, "does not exist"),
])
def test_bad_link_targets(body, line, words):
    with pytest.raises(BadFileError) as err:
        parse_xcm(HEADER + "model 2:m powerlaw\n" + body, source="x.xcm")
    assert f"line {line}" in str(err.value) and words in str(err.value) and "x.xcm" in str(err.value)


def test_validate_programmatic_session():
    s = XcmSession(data=[DataEntry(1, 1, "a.pha")], responses=[ResponseEntry(2, 1, "a.rmf")])
    s.models = [make_block(2, "m", "powerlaw", [ParamLine(1.0, 0.01)])]
    with pytest.raises(BadConfigError, match="1 parameter lines, expected 2"):
        validate(s)
    s.models = [make_block(2, "m", "powerlaw", [Link(1.0, "m", 2), Link(1.0, "m", 1)])]
    with pytest.raises(BadConfigError, match="cycle"):
        validate(s)
    with pytest.raises(BadConfigError, match="component_sizes"):
        make_block(2, "m", "nuabs(powerlaw)", [])
    b = make_block(2, "m", "nuabs(powerlaw)", [ParamLine(0.1, -1)] * 3 + [ParamLine(1.0, 0.01)] * 2,
                   component_sizes=[3, 2])
    assert b.n_params_per_group == 5 and b.parameter_names[2] == ("nuabs", "par3")


# ---------------------------------------------------------------------------------------------
# Tcl and interactive commands
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line", [
    "puts \"run bgdparams.xcm\"", "set fileid [open bgdparams.dat w]", "tclout param 4", "proc f {} {",
    "if {1} {", "for {set i 0} {$i < 3} {incr i} {", "foreach p {1 2} {", "scan $x %f y", "open f.dat",
    "source other.tcl", "@bgdparams.xcm", "newpar 1 [expr 2*3]", "data 1:1 $spec", "fit 10; plot",
    "}", "model powerlaw \\",
])
def test_tcl_refused_with_line_number(tmp_path, line):
    path = _write(tmp_path, "statistic chi\n# comment\n" + line + "\n")
    with pytest.raises(BadFileError) as err:
        read_xcm(path)
    msg = str(err.value)
    assert "line 3" in msg and str(path) in msg and "\n" not in msg


def test_interactive_commands_are_noted_not_executed():
    s = parse_xcm("cpd /xw\nsetplot energy\ndata 1:1 a.pha\nplot ldata\nfit 100\nquery yes\nshow all\n"
                  "log run.log\nmodel powerlaw\n2 0.01\n1 0.01\n")
    ignored = [n.split("'")[1] for n in s.notes]
    assert ignored == ["cpd", "setplot", "plot", "fit", "query", "show", "log"]
    assert s.models[0].params == [ParamLine(2.0, 0.01), ParamLine(1.0, 0.01)]


@pytest.mark.parametrize("line, words", [("addcomp 2 gaussian", "not supported"), ("frobnicate 3", "unknown command"),
                                         ("lmod relxill .", "not supported")])
def test_unsupported_commands(line, words):
    with pytest.raises(BadFileError, match=words) as err:
        parse_xcm("data 1:1 a.pha\n" + line + "\n")
    assert "line 2" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Parameter lines
# ---------------------------------------------------------------------------------------------


def test_too_few_parameter_lines():
    with pytest.raises(BadFileError) as err:
        parse_xcm(HEADER + "model 2:m powerlaw\n1 0.01\n1 0.01\n= m:p1\nmodel 3:n powerlaw\n", source="f.xcm")
    msg = str(err.value)
    assert "line 12" in msg and "expected model m parameter 4" in msg and "2 per group x 2 group(s)" in msg


def test_file_ends_inside_block():
    with pytest.raises(BadFileError, match="file ends inside model m: 3 of 4"):
        parse_xcm(HEADER + "model 2:m powerlaw\n1 0.01\n1 0.01\n= m:p1\n")


def test_too_many_parameter_lines():
    with pytest.raises(BadFileError) as err:
        parse_xcm(HEADER + "model 2:m powerlaw\n1 0.01\n1 0.01\n= m:p1\n= m:p2\n5 0.01\n")
    assert "line 13" in str(err.value) and "outside a model block" in str(err.value)


@pytest.mark.parametrize("bad", ["nan 0.01", "inf 0.01", "1 2 3 4 5 6 7", "1,0 0.01", "0x10 1"])
def test_bad_value_lines(bad):
    with pytest.raises(BadFileError) as err:
        parse_xcm(HEADER + "model 2:m powerlaw\n" + bad + "\n1 0.01\n= m:p1\n= m:p2\n")
    assert "line 9" in str(err.value)


def test_blank_lines_take_xspec_defaults():
    s = parse_xcm(HEADER + "model 2:m cutoffpl\n\n2 0.01\n0.5\n\n= m:p2\n\n")
    m = s.models[0]
    assert m.params[0] == ParamLine(1.0, 0.01)  # cutoffpl PhoIndex default (model.dat)
    assert m.params[2] == ParamLine(0.5, 0.01)  # value only: default step kept
    assert m.params[3] == Link(1.0, "m", 1) and m.params[5] == Link(1.0, "m", 3)
    assert sum("XSPEC default used" in n for n in s.notes) == 3


def test_unknown_model_counts():
    with pytest.raises(BadFileError, match="foo, nuabs") as err:
        parse_xcm(HEADER + "model 2:m nuabs(foo*powerlaw)\n" + "1 0.01\n" * 10)
    assert "line 8" in str(err.value)
    with pytest.raises(BadFileError, match="cannot infer the parameter count of model 'nuabs'"):
        parse_xcm(HEADER + "model 2:m nuabs(powerlaw)\n" + "1 0.01\n" * 5)
    s = parse_xcm(HEADER + "model 2:m nuabs(powerlaw)\n" + "1 0.01\n" * 6 + "\nfit\n")
    assert s.models[0].component_sizes == [1, 2]


def test_data_group_rules():
    with pytest.raises(BadFileError, match="not numbered 1..2"):
        parse_xcm("data 1:1 a.pha 3:2 b.pha\n")
    with pytest.raises(BadFileError, match="after a model"):
        parse_xcm("data 1:1 a.pha\nmodel powerlaw\n1 0.01\n1 0.01\ndata 2:2 b.pha\n")
    s = parse_xcm("data a.pha\n")
    assert s.data == [(1, 1, "a.pha")] and "group 1 assumed" in s.notes[0]


def test_untie_and_exit():
    s = parse_xcm(HEADER + "model 2:m powerlaw\n1.5 -0.02\n3 0.01\n= 2*m:p1\n= m:p2\nuntie m:3\nexit\nputs x\n")
    assert "rest of the file is not read" in s.notes[-1]
    eff = apply_changes(s)
    assert eff.models[0].params[2] == ParamLine(3.0, -0.02)  # 2 x 1.5, step/frozen state of m:p1
    assert eff.newpars == [] and s.newpars == [ParamChange("untie", "m", 3)]


def test_newpar_and_freeze(tmp_path):
    text = HEADER + ("model 2:m powerlaw\n1.5 0.01\n2e-3 0.01 0 0 1e20 1e24\n= m:p1\n= 0.5*m:p2\n"
                     "newpar m:2 4e-3\nnewpar m:4 = m:p2\nfreeze m:1\nthaw m:1-1\n")
    s = parse_xcm(text)
    assert s.newpars[0] == ParamChange("newpar", "m", 2, ParamLine(4e-3))
    eff = apply_changes(s)
    assert eff.models[0].params[1] == ParamLine(4e-3, 0.01, 0, 0, 1e20, 1e24)
    assert eff.models[0].params[0] == ParamLine(1.5, 0.01)
    values = resolve_values(s)
    assert values[("m", 4)] == 4e-3 and values[("m", 2)] == 4e-3
    written = format_xcm(s)
    assert written.splitlines()[-5:] == ["newpar m:2 0.004", "newpar m:4 = m:p2", "freeze m:1", "thaw m:1", "bayes off"]
    assert parse_xcm(written) == s
    with pytest.raises(BadFileError, match="no such parameter") as err:
        parse_xcm(HEADER + "model 2:m powerlaw\n1 0.01\n1 0.01\n= m:p1\n= m:p2\nfreeze m:5\n")
    assert "line 13" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------


def _small_session():
    s = XcmSession(settings={"statistic": "chi"}, data=[DataEntry(1, 1, "a.pha")],
                   backgrounds={1: "none"}, responses=[ResponseEntry(2, 1, "a.rmf")],
                   ignore=["**:**-3.0 150.0-**"])
    s.models = [make_block(2, "apbgd", "cutoffpl", [ParamLine(1.29, -0.01), ParamLine(41.13, -0.01),
                                                    ParamLine(0.1 + 0.2, 0.01)])]
    return s


def test_writer_conventions():
    text = format_xcm(_small_session())
    assert text == ("statistic chi\nabund angr\ndata 1:1 a.pha\nbackgrnd 1 none\nresponse 2:1 a.rmf\n"
                    "ignore **:**-3.0 150.0-**\nmodel 2:apbgd cutoffpl\n1.29 -0.01\n41.13 -0.01\n"
                    "0.30000000000000004 0.01\nbayes off\n")


def test_write_and_never_overwrite(tmp_path):
    path = tmp_path / "out.xcm"
    s = _small_session()
    assert write_xcm(s, path) == path
    assert read_xcm(path) == parse_xcm(format_xcm(s))
    assert read_xcm(path).models[0].params[2].value == 0.1 + 0.2  # lossless
    before = path.read_text()
    s.models[0].params[2] = ParamLine(0.5, 0.01)
    with pytest.raises(OutputExistsError):
        write_xcm(s, path)
    assert path.read_text() == before
    write_xcm(s, path, overwrite=True)
    assert read_xcm(path).models[0].params[2] == ParamLine(0.5, 0.01)
    assert [p.name for p in tmp_path.iterdir()] == ["out.xcm"]


@pytest.mark.parametrize("name", ["my file.pha", "a{2}.pha", "b[1].pha", "", "x;fit"])
def test_writer_refuses_bad_file_names(tmp_path, name):
    s = _small_session()
    s.data = [DataEntry(1, 1, name)]
    with pytest.raises(BadConfigError, match="cannot be written"):
        write_xcm(s, tmp_path / "o.xcm")
    assert not (tmp_path / "o.xcm").exists()


@pytest.mark.parametrize("bad", [ParamLine(math.nan, 0.01), ParamLine(1.0, math.inf),
                                 ParamLine(1.0, 0.01, -math.inf, 0, 1, 2), Link(math.inf, "apbgd", 1),
                                 Link(math.nan, "apbgd", 1)])
def test_writer_refuses_non_finite(bad):
    s = _small_session()
    s.models[0].params[2] = bad
    with pytest.raises(BadConfigError, match="non-finite") as err:
        format_xcm(s)
    assert "apbgd" in str(err.value)


def test_writer_refuses_orphan_arf_and_missing_response():
    s = _small_session()
    s.arfs = [ResponseEntry(3, 1, "x.arf")]
    with pytest.raises(BadConfigError, match="without a response"):
        format_xcm(s)
    s = _small_session()
    s.responses = []
    with pytest.raises(BadConfigError, match="no 'response 2:s'"):
        format_xcm(s)


def test_number_formatting_is_lossless():
    rng = random.Random(7)
    for _ in range(2000):
        x = rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30)
        assert float(format_number(x)) == x and float(format_factor(x)) == x
    assert format_number(124.0) == "124" and format_number(0.0) == "0" and format_number(1e24) == "1e+24"
    assert format_factor(0.856677) == "8.566770e-01"  # XSPEC's %e style when exact
    assert format_factor(0.1 + 0.2) == "3.0000000000000004e-01"
    with pytest.raises(BadConfigError):
        format_number(math.nan)


def test_read_missing_and_binary(tmp_path):
    with pytest.raises(BadFileError, match="not found"):
        read_xcm(tmp_path / "none.xcm")
    p = tmp_path / "bin.xcm"
    p.write_bytes(b"\xff\xfe\x00model")
    with pytest.raises(BadFileError, match="not text"):
        read_xcm(p)
