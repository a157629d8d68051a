"""Model state <-> XSPEC session: round trips, the apec stand-in block, link renumbering (spec §4, §6.1-18)."""

import re

import numpy as np
import pytest

from nuskybgd_engine.errors import BadConfigError, BadFileError
from nuskybgd_engine.model.background import BackgroundOptions, RegionWeights, build_background_model
from nuskybgd_engine.model.components import APEC_STANDIN, ApecShape
from nuskybgd_engine.model.presets import load_presets
from nuskybgd_engine.model.xcm_model import ignore_string, session_to_state, state_to_session
from nuskybgd_engine.xcm import format_xcm, parse_xcm, resolve_values

WEIGHTS = [RegionWeights(164.1, (6316.06, 0.227, 0.0, 1489.52), "A", "r1"),
           RegionWeights(240.0, (100.0, 5000.0, 2500.0, 0.0), "B", "r1B"),
           RegionWeights(140.6, (0.0, 4000.0, 3000.0, 10.0), "A", "r2"),
           RegionWeights(89.3, (3000.0, 3000.0, 0.0, 1500.0), "B", "r2B")]
MODULES = ["A", "B", "A", "B"]
STANDIN = {"evaluated_by": "standin", "xspec_name": "bremss", "norm_factor": APEC_STANDIN["norm_factor"]}
PYXSPEC = {"evaluated_by": "pyxspec", "xspec_name": "apec", "norm_factor": 1.0}


def files(n=4):
    return [dict(spectrum=f"bgd{g}_sr.pha", rmf=f"bgd{g}_sr.rmf", ap_arf="be.arf",
                 fcxb_arf=f"fcxb{MODULES[(g - 1) % 4]}.arf", diag="diag.rmf") for g in range(1, n + 1)]


@pytest.fixture(scope="module")
def presets():
    return load_presets()


@pytest.fixture(params=[dict(fix_line_ratios=True, fcxb_links=[(1, 2), (3, 4)]), dict(no_solar=True),
                        dict(), dict(negative_norms=True)], ids=["ratios+links", "no_solar", "default", "negative"])
def state(request, presets):
    st = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(**request.param))
    # Values as after a fit: every free parameter moved off its preset.
    rng = np.random.default_rng(5)
    for s, k in st.free_parameters():
        st[s][k].value *= rng.uniform(0.5, 2.0)
    if request.param.get("negative_norms"):  # fitted below 0, as weak lines can be
        for i, (s, k) in enumerate(st.free_parameters()):
            if st[s][k].is_norm and i % 3 == 0:
                st[s][k].value *= -1
    for s in st:
        for k, p in enumerate(s.params, start=1):
            if p.link is not None:
                p.value = st.value(s.name, k)
    return st


def block_lines(text, name):
    """The parameter lines of ``model N:name`` in an .xcm text."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"model \d+:{name} ", line))
    out = []
    for line in lines[start + 1:]:
        if line.startswith(("model ", "bayes")):
            break
        out.append(line)
    return out


def assert_same_state(a, b, *, rtol=1e-14):
    assert [s.name for s in a] == [s.name for s in b]
    for sa in a:
        sb = b[sa.name]
        assert sa.number == sb.number and sa.n_par == sb.n_par and len(sa.params) == len(sb.params)
        assert [t for _c, t in sa.components] == [t for _c, t in sb.components]
        for k, (pa, pb) in enumerate(zip(sa.params, sb.params), start=1):
            where = f"{sa.name}:p{k}"
            assert (pa.name, pa.component) == (pb.name, pb.component), where
            assert pa.frozen == pb.frozen, where
            if pa.link is None:  # a link line carries no limits (nor needs any)
                assert (pa.hard_min, pa.soft_min, pa.soft_max, pa.hard_max) == (pb.hard_min, pb.soft_min,
                                                                                pb.soft_max, pb.hard_max), where
            assert (pa.link is None) == (pb.link is None), where
            if pa.link is not None:
                assert (pa.link.source, pa.link.index) == (pb.link.source, pb.link.index), where
                assert pa.link.factor == pytest.approx(pb.link.factor, rel=rtol), where
            va, vb = a.value(sa.name, k), b.value(sa.name, k)
            assert vb == pytest.approx(va, rel=rtol, abs=0), where


@pytest.mark.parametrize("apec", [STANDIN, PYXSPEC], ids=["standin", "pyxspec"])
def test_round_trip(state, apec):
    text = format_xcm(state_to_session(state, files(), statistic="cstat", apec=apec))
    back = session_to_state(parse_xcm(text, source="rt.xcm"))
    assert_same_state(state, back)


def test_standin_block_layout_and_renumbering(state):
    text = format_xcm(state_to_session(state, files(), apec=STANDIN))
    lines = block_lines(text, "intbgd")
    assert len(lines) == 89 * 4  # bremss (kT, norm) + 29 lorentz x 3 per group
    header = next(x for x in text.splitlines() if x.startswith("model 3:intbgd"))
    assert header.split(None, 2)[2].split(" + ") == ["bremss"] + ["lorentz"] * 29
    assert text.startswith("#") and "stand-in" in text.splitlines()[0]
    factor = APEC_STANDIN["norm_factor"]
    for g in (1, 2):  # references: kT frozen, stand-in norm = factor x apec norm
        kt, norm = lines[(g - 1) * 89], lines[(g - 1) * 89 + 1]
        assert kt.split() == ["1.14579", "-0.01"]
        p = state["intbgd"][(g - 1) * 91 + 4]
        if p.link is None:
            assert float(norm.split()[0]) == pytest.approx(factor * p.value, rel=1e-15)
            assert (float(norm.split()[1]) < 0) == p.frozen
    # Every link of the original points to old index k; in the file to k - 2 for locals >= 4 of its group.
    for k, p in enumerate(state["intbgd"].params, start=1):
        g, local = divmod(k - 1, 91)
        if local + 1 in (2, 3):
            continue  # Abundanc, Redshift: not in bremss
        new_local = local + 1 if local == 0 else local + 1 - 2
        line = lines[g * 89 + new_local - 1]
        if p.link is None:
            assert not line.startswith("=")
            continue
        tg, tlocal = divmod(p.link.index - 1, 91)
        t_new = tlocal + 1 if tlocal == 0 else tlocal + 1 - 2
        m = re.fullmatch(r"= (?:(\S+)\*)?intbgd:p(\d+)", line)
        assert m, line
        assert int(m.group(2)) == tg * 89 + t_new, (k, line)
        assert float(m.group(1) or 1.0) == pytest.approx(p.link.factor, rel=1e-15)


def test_restored_abundance_and_redshift(state):
    back = session_to_state(parse_xcm(format_xcm(state_to_session(state, files(), apec=STANDIN))))
    for g, m in enumerate(MODULES, start=1):
        r = MODULES.index(m) + 1
        for local, value in ((2, 1.32692), (3, 0.0)):
            p = back["intbgd"][(g - 1) * 91 + local]
            if g == r:
                assert p.frozen and p.link is None and p.value == value
            else:  # non-reference groups: linked to their reference, as built
                assert (p.link.source, p.link.index, p.link.factor) == ("intbgd", (r - 1) * 91 + local, 1.0)
                assert back.value("intbgd", (g - 1) * 91 + local) == value


def test_pyxspec_block_has_91_parameters(state):
    text = format_xcm(state_to_session(state, files(), apec=PYXSPEC))
    assert len(block_lines(text, "intbgd")) == 91 * 4
    for name, n in (("apbgd", 3), ("fcxb", 3), ("intn", 4)):
        assert len(block_lines(text, name)) == n * 4
    assert "stand-in" not in text


def test_exported_values_resolve_like_the_state(state):
    """Every link of the file evaluates (xcm.resolve_values) to the state's value (x the stand-in factor)."""
    session = parse_xcm(format_xcm(state_to_session(state, files(), apec=STANDIN)))
    values = resolve_values(session)
    factor = APEC_STANDIN["norm_factor"]
    for name, n_new in (("apbgd", 3), ("fcxb", 3), ("intn", 4)):
        for k in range(1, len(state[name].params) + 1):
            assert values[(name, k)] == pytest.approx(state.value(name, k), rel=1e-14)
    for k in range(1, len(state["intbgd"].params) + 1):
        g, local = divmod(k - 1, 91)
        if local + 1 in (2, 3):
            continue
        new = g * 89 + (local + 1 if local == 0 else local - 1)
        want = state.value("intbgd", k) * (factor if local + 1 == 4 else 1.0)
        assert values[("intbgd", new)] == pytest.approx(want, rel=1e-14), k


def test_session_settings_and_responses(state):
    s = state_to_session(state, files(), statistic="chi", apec=STANDIN, ignore=(3.0, 150.0))
    assert s.settings["statistic"] == "chi" and s.settings["abund"] == "angr"
    assert s.ignore == ["**:**-3.0 150.0-**"] == [ignore_string((3, 150))]
    resp = {(r.source, r.spectrum): r.file for r in s.responses}
    arfs = {(r.source, r.spectrum): r.file for r in s.arfs}
    assert resp[(2, 3)] == "bgd3_sr.rmf" and arfs[(2, 3)] == "be.arf"
    assert resp[(3, 2)] == "bgd2_sr.rmf" and (3, 2) not in arfs
    assert arfs[(4, 2)] == "fcxbB.arf" and resp[(5, 4)] == "diag.rmf" and (5, 4) not in arfs
    assert [d.file for d in s.data] == [f"bgd{g}_sr.pha" for g in range(1, 5)]


def test_state_to_session_group_mismatch(state):
    with pytest.raises(BadConfigError):
        state_to_session(state, files(3), apec=STANDIN)


def test_session_without_background_models(state):
    session = parse_xcm(format_xcm(state_to_session(state, files(), apec=STANDIN)))
    session.models = [b for b in session.models if b.name != "intn"]
    with pytest.raises(BadConfigError) as exc:
        session_to_state(session)
    assert "intn" in str(exc.value)


def test_xcm_with_tcl_or_unknown_model_is_refused(state):
    text = format_xcm(state_to_session(state, files(), apec=STANDIN))
    for bad in ("puts \"fit done\"", "tclout param 4", "set x [tcloutr stat]"):
        with pytest.raises(BadFileError) as exc:
            parse_xcm(text.replace("bayes off", f"{bad}\nbayes off"), source="bad.xcm")
        assert "bad.xcm" in str(exc.value)
    # An unknown (local) model parses (XSPEC files may hold them) but is not a background model.
    session = parse_xcm(text.replace("model 5:intn bknpower", "model 5:intn mymodel"), source="bad.xcm")
    with pytest.raises(BadConfigError) as exc:
        session_to_state(session)
    assert "mymodel" in str(exc.value) and "intn" in str(exc.value)


def test_apec_shape_export_descriptor():
    assert ApecShape(route="standin").xspec_component()["xspec_name"] == "bremss"
    assert ApecShape(route="standin").xspec_component()["norm_factor"] == pytest.approx(APEC_STANDIN["norm_factor"])
