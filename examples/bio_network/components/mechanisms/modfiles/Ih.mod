: Hyperpolarisation-activated cation current (HCN, "Ih"), written for the sonatarun bio_network example.
: Kinetics after Kole, Hallermann & Stuart (2006) J Neurosci 26:1677, the form used by Allen Cell Types models.
: ehcn is a parameter (not an ion), so the mechanism needs no ion declarations.

NEURON {
    SUFFIX Ih
    NONSPECIFIC_CURRENT ihcn
    RANGE gbar, g, ihcn, ehcn
}

UNITS {
    (S) = (siemens)
    (mV) = (millivolt)
    (mA) = (milliamp)
}

PARAMETER {
    gbar = 0.00001 (S/cm2)
    ehcn = -45.0 (mV)
}

ASSIGNED {
    v (mV)
    ihcn (mA/cm2)
    g (S/cm2)
    mInf
    mTau (ms)
    mAlpha (/ms)
    mBeta (/ms)
}

STATE {
    m
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar * m
    ihcn = g * (v - ehcn)
}

DERIVATIVE states {
    rates()
    m' = (mInf - m) / mTau
}

INITIAL {
    rates()
    m = mInf
}

PROCEDURE rates() {
    LOCAL vs
    UNITSOFF
    vs = v
    if (vs == -154.9) {
        vs = vs + 0.0001
    }
    mAlpha = 0.001 * 6.43 * (vs + 154.9) / (exp((vs + 154.9) / 11.9) - 1)
    mBeta = 0.001 * 193 * exp(vs / 33.1)
    mInf = mAlpha / (mAlpha + mBeta)
    mTau = 1 / (mAlpha + mBeta)
    UNITSON
}
